"""How far the API's read standby is behind the primary: `X-Conveyor-Read-Lag` and readiness.

With `CONVEYOR_READ_DATABASE_URL` the API reads its read models from a streaming standby
(docs/architecture.md §10.1). Each read answer says how stale it may be, in seconds: the
time since the standby replayed the last transaction it received, or 0 when it has
replayed everything the primary sent. That second case is what keeps an idle primary
from looking like a lagging standby: with nothing written, the last replay grows old
while the standby is fully caught up. A standby whose WAL receiver is not running
(its primary is gone) cannot know what it has missed, so it reports the age of its last
replay. A server that is not in recovery (the standby was promoted, or the URL's
`target_session_attrs=prefer-standby` fell back to the primary) is 0 behind.

The answer is one query of a few functions, kept for `TTL_SECONDS`, so reads cost at
most four of it a second per process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import falcon
import psycopg

HEADER = "X-Conveyor-Read-Lag"
TTL_SECONDS = 0.25
READ_LAG_SQL = """
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0.0
    WHEN EXISTS (SELECT FROM pg_stat_wal_receiver)
         AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0
    ELSE coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()),
                  0.0)::float8
END AS lag
"""


class ReadLag:
    """The standby's lag in seconds, measured at most once a TTL by one thread."""

    def __init__(self, connection: Callable[[], Any],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.connection = connection
        self.clock = clock
        self._lock = threading.Lock()
        self._measured_at = -1e9
        self._seconds = 0.0

    def seconds(self) -> float:
        """The lag, at most a TTL old; raises `psycopg.Error` when the standby is away."""
        if self.clock() - self._measured_at > TTL_SECONDS:
            with self._lock, self.connection() as conn:
                row = conn.execute(READ_LAG_SQL).fetchone()
                self._seconds = max(0.0, float(row["lag"]))
                self._measured_at = self.clock()
        return self._seconds

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        """As Falcon middleware: every read of the API, and readiness, say how stale the
        standby may be."""
        if req.method != "GET" or resource is None or not (
                req.path.startswith("/workflow-queue") or req.path == "/health/ready"):
            return
        # A standby away has failed the read itself (503): there is no lag to tell.
        with contextlib.suppress(psycopg.Error):
            resp.set_header(HEADER, f"{self.seconds():.3f}")
