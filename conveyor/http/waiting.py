"""`GET /workflow-queue/jobs/{id}?wait=N`: requests that wait for a job to settle.

A job is settled when it is finished or paused for an outside event (`SETTLED`). The jobs
projector sends `NOTIFY jobs_settled` in the transaction that writes a settled job's row;
one thread per API process LISTENs on one connection of its own for every waiting request
of the process, and on each notification asks the `jobs` table, in one query, which of the
jobs waited for have settled, and wakes their requests. No request polls.

Waiting holds one of the process's threads (gthread: `CONVEYOR_WEB_THREADS`, 8), so at most
`limit` requests wait at once (two threads fewer than the process has, at least one), and
one waits at most `MAX_WAIT_SECONDS`; one more waiter is answered 503 with `Retry-After: 1`
(`TooManyWaitersError`) at once, so the other routes always have threads to run on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg

from conveyor.errors import ConveyorError
from conveyor.projections.jobs import SETTLED, SETTLED_CHANNEL

log = logging.getLogger("conveyor.api")
MAX_WAIT_SECONDS = 30
# How long a first waiter gives the listening connection to open before it waits anyway
# (it is answered at its deadline then, with the job's state).
LISTEN_SECONDS = 5.0
RECONNECT_SECONDS = 1.0
# How often the listener looks whether it is asked to stop, between notifications.
STOP_CHECK_SECONDS = 1.0


class JobWaiter:
    """Wakes the requests waiting for jobs when the projector says some have settled."""

    def __init__(self, database_url: str, limit: int,
                 connect: Callable[[str], psycopg.Connection[Any]] | None = None) -> None:
        self.database_url = database_url
        self.limit = limit
        self._connect = connect or (lambda url: psycopg.connect(url, autocommit=True))
        self._lock = threading.Lock()
        self._waiting: dict[UUID, set[threading.Event]] = {}
        self._count = 0
        self._listening = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        """How many requests of the process wait now."""
        return self._count

    def wait(self, job_id: UUID, seconds: float, settled: Callable[[], bool]) -> None:
        """Return once `settled()` or the job's row says so, or after `seconds`.

        The request is registered before `settled()` is asked, so a job that settles
        between the two is not missed.
        """
        woken = threading.Event()
        with self._lock:
            if self._count >= self.limit:
                raise TooManyWaitersError(
                    f"{self.limit} requests of this process are waiting already;"
                    " try again shortly.")
            self._count += 1
            self._waiting.setdefault(job_id, set()).add(woken)
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="job-waiter",
                                                daemon=True)
                self._thread.start()
        try:
            self._listening.wait(LISTEN_SECONDS)
            if not settled():
                woken.wait(seconds)
        finally:
            with self._lock:
                self._count -= 1
                events = self._waiting[job_id]
                events.discard(woken)
                if not events:
                    del self._waiting[job_id]

    def close(self) -> None:
        """Stop the listener (within STOP_CHECK_SECONDS) and close its connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with self._connect(self.database_url) as conn:
                    conn.execute(f"LISTEN {SETTLED_CHANNEL}")
                    self._listening.set()
                    # A notification sent while no one listened is lost: look once.
                    self._wake(conn)
                    while not self._stop.is_set():
                        # Out of the generator before querying: it holds the connection's
                        # lock while it yields.
                        heard = list(conn.notifies(timeout=STOP_CHECK_SECONDS, stop_after=1))
                        if heard:
                            self._wake(conn)
            except psycopg.Error as error:
                self._listening.clear()
                log.warning("waiting requests' listener lost its connection: %s", error)
                self._stop.wait(RECONNECT_SECONDS)

    def _wake(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            waited = list(self._waiting)
        if not waited:
            return
        rows = conn.execute("SELECT job_id FROM jobs WHERE job_id = ANY(%s) AND status = ANY(%s)",
                            (waited, sorted(SETTLED))).fetchall()
        with self._lock:
            for (job_id,) in rows:
                for woken in self._waiting.get(job_id, ()):
                    woken.set()


class TooManyWaitersError(ConveyorError):
    """Raised when a request asks to wait while the process's waiting requests are at their
    bound (answered 503 with `Retry-After`)."""
