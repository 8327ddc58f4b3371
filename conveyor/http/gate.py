"""A quick answer when PostgreSQL is away: 503 at once, instead of a request that hangs.

The event store's recorder retries a lost database ten times, each waiting on its pool,
so a request that reaches it during an outage hangs for most of a minute. The gate asks
first, on a connection of its own with a short connect timeout, and remembers the answer
briefly: a healthy database costs a `SELECT 1` four times a second, an unreachable one a
refused connection in milliseconds.
"""

from __future__ import annotations

import select
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import falcon
import psycopg

from conveyor.errors import ConveyorError

T = TypeVar("T")

# How long an answer is trusted; a healthy database is probed at most this often.
HEALTHY_TTL_SECONDS = 0.25
DOWN_TTL_SECONDS = 0.5
PROBE_TIMEOUT_SECONDS = 1
NO_DATABASE_PREFIXES = ("/health/", "/dashboard/", "/openapi.json", "/metrics")


class DatabaseUnavailableError(ConveyorError, psycopg.OperationalError):
    """Raised by the gate, before any pool is touched, while PostgreSQL cannot be reached.

    A `psycopg.OperationalError`, so the HTTP error mapping answers it with 503.
    """


class DatabaseGate:
    """Whether PostgreSQL answers now, probed at most once a TTL by one thread."""

    def __init__(self, database_url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.database_url = database_url
        self.clock = clock
        self._lock = threading.Lock()
        self._checked_at = -1e9
        self._error: str | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def check(self) -> None:
        """Return if PostgreSQL answered lately; raise `DatabaseUnavailableError` if not."""
        ttl = DOWN_TTL_SECONDS if self._error else HEALTHY_TTL_SECONDS
        stale = self.clock() - self._checked_at > ttl or self._server_spoke()
        if stale and self._lock.acquire(blocking=False):
            try:
                self._error = self._probe()
                self._checked_at = self.clock()
            finally:
                self._lock.release()
        if self._error:
            raise DatabaseUnavailableError(self._error)

    def _server_spoke(self) -> bool:
        """Whether the idle probe connection has something to read: a server shutting down
        (or dying) tells or drops its clients at once, so a cached "healthy" is not trusted
        past that moment. A poll, not a round trip."""
        conn = self._conn
        if conn is None or self._error:
            return False
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError, psycopg.Error):
            return True
        return bool(readable)

    def _probe(self) -> str | None:
        # The kept connection may have been closed for idling: one fresh try before "down".
        for _ in range(2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        self.database_url, connect_timeout=PROBE_TIMEOUT_SECONDS,
                        autocommit=True)
                    # An app is never told it is finished: close with the gate.
                    weakref.finalize(self, self._conn.close)
                self._conn.execute("SELECT 1")
                return None
            except psycopg.Error as error:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                failure = f"{type(error).__name__}: {error}".strip()
        return failure

    def guard(self, factory: Callable[[], T]) -> Callable[[], T]:
        """`factory`, checked first: the webhook app's way to the event store."""

        def guarded() -> T:
            self.check()
            return factory()

        return guarded

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        """As Falcon middleware: data routes refuse at once while the store is away.

        Health answers for itself, and the dashboard's page and files need no database,
        so it can load and say that Conveyor is not answering.
        """
        if resource is not None and not req.path.startswith(NO_DATABASE_PREFIXES) \
                and req.path != "/":
            self.check()
