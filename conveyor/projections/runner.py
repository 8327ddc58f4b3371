"""Running the projections: one reader of the log feeding every read model in batches.

eventsourcing's `ProjectionRunner` hands its projection one event at a time, so each
event costs a transaction; that caps a rebuild at a few thousand events a second. This
runner reads the log with `select_notifications` a page at a time, decodes each event
once, and gives each projection the page as one batch: its rows and the tracking of the
page's last notification in one transaction, checked against the position it was read
from, so every event is still applied exactly once. When every projection was read from
the same position (the usual case), all their batches share that one transaction: one
commit a page instead of one a projection. The projections remain library
`Projection`s; the library's runner can drive them one event at a time too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, Tracking

from conveyor.application import Jobs
from conveyor.changes import Change, JobFollower, loader
from conveyor.projections.batch import (
    APPLICATION,
    BatchProjection,
    BatchView,
    PositionMovedError,
    commit_together,
)
from conveyor.projections.history import HistoryProjection, HistoryView
from conveyor.projections.jobs import JobsProjection, JobsView
from conveyor.projections.metrics import MetricsProjection, MetricsView
from conveyor.store import datastore_of

log = logging.getLogger(__name__)

PROJECTIONS: dict[str, tuple[type[BatchProjection[Any]], type[BatchView]]] = {
    "jobs": (JobsProjection, JobsView),
    "job_history": (HistoryProjection, HistoryView),
    "metrics": (MetricsProjection, MetricsView),
}
_TRANSIENT = (OperationalError, InterfaceError, psycopg.OperationalError)


def follower_of(app: Jobs) -> JobFollower:
    """A follower that reads from the application's store the jobs it has not seen."""
    return JobFollower(loader(app.repository))


def build_projection(name: str, app: Jobs, follower: JobFollower,
                     suffix: str = "") -> BatchProjection[Any]:
    """The projection `name`, writing to its live tables or to a copy named with `suffix`."""
    projection_class, view_class = PROJECTIONS[name]
    view = view_class(datastore_of(app), tracking_table_name=f"{name}_tracking", suffix=suffix)
    return projection_class(view=view, follower=follower)


class BatchRunner:
    """Follows the log into some projections, a page at a time, in a thread or inline."""

    def __init__(
        self,
        app: Jobs,
        projections: Sequence[BatchProjection[Any]],
        *,
        batch_size: int = 1000,
        poll_seconds: float = 0.5,
        listen_url: str | None = None,
        close_app: bool = False,
    ) -> None:
        self.app = app
        self.projections = list(projections)
        # The projections share their follower: one read of a job serves them all.
        self.follower = self.projections[0].follower if self.projections else follower_of(app)
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.listen_url = listen_url
        self.close_app = close_app
        self.processed = 0
        self._positions: dict[str, int] | None = None
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # Inline use (replay, tests) ----------------------------------------------

    def positions(self) -> dict[str, int]:
        if self._positions is None:
            self._positions = {
                p.name: p.view.max_tracking_id(APPLICATION) or 0 for p in self.projections
            }
        return self._positions

    def run_once(self, stop: int | None = None) -> int:
        """Apply the next page of the log (up to `stop`); return how many events it held."""
        positions = self.positions()
        start = min(positions.values())
        notes = self.app.recorder.select_notifications(
            start, self.batch_size, stop=stop, inclusive_of_start=False)
        if not notes:
            return 0
        # Each event is decoded and applied to its job once, for every projection.
        follower = self.follower
        changes = [(n.id, follower.apply(self.app.mapper.to_domain_event(n))) for n in notes]
        last = notes[-1].id
        tracking = Tracking(APPLICATION, last)
        behind = [p for p in self.projections if positions[p.name] < last]
        batches = {p.name: [c for i, c in changes if c is not None and i > positions[p.name]]
                   for p in behind}
        try:
            if not self._commit_together(behind, batches, tracking):
                for projection in behind:
                    after = positions[projection.name]
                    projection.process_batch(batches[projection.name], tracking, after)
        except (PositionMovedError, IntegrityError):
            # Another writer (a second projector, or a rebuild's swap) moved it.
            self._positions = None
            raise
        for projection in behind:
            positions[projection.name] = last
        self.processed += len(notes)
        return len(notes)

    def _commit_together(self, behind: Sequence[BatchProjection[Any]],
                         batches: dict[str, list[Change]], tracking: Tracking) -> bool:
        """Commit every view's batch in one transaction, if they were read from one position.

        Their positions differ after a rebuild swapped one in, say; then, or when a rebuild
        holds a view, each view commits on its own.
        """
        afters = {self.positions()[p.name] for p in behind}
        stores = {id(p.view.datastore) for p in behind}
        if len(behind) < 2 or len(afters) > 1 or len(stores) > 1:
            return False
        return commit_together([(p.view, batches[p.name]) for p in behind], tracking,
                               afters.pop())

    def run_until(self, stop: int, progress: Callable[[int], None] | None = None) -> int:
        """Apply the log up to notification `stop`; return how many events were read."""
        total = 0
        while (n := self.run_once(stop)) > 0:
            total += n
            if progress is not None:
                progress(min(self.positions().values()))
        return total

    # Threaded use (the projector) --------------------------------------------

    def start(self) -> BatchRunner:
        self._thread = threading.Thread(target=self._loop, name="projector", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        listener: psycopg.Connection[Any] | None = None
        try:
            while not self._stopping.is_set():
                try:
                    # LISTEN before reading, so no append between the two goes unnoticed;
                    # again after a lost connection (an outage, a failover to a standby).
                    if self.listen_url and listener is None:
                        listener = psycopg.connect(self.listen_url, autocommit=True)
                        listener.execute("LISTEN jobs_events")
                    if self.run_once() == self.batch_size:
                        continue
                    if listener is not None:
                        for _ in listener.notifies(timeout=self.poll_seconds, stop_after=1):
                            pass
                    else:
                        self._stopping.wait(self.poll_seconds)
                except (PositionMovedError, IntegrityError) as moved:
                    log.info("projection position moved; rereading: %s", moved)
                except _TRANSIENT as error:
                    log.warning("projector: database unavailable, retrying: %s", error)
                    self._positions = None
                    if listener is not None:
                        listener.close()
                        listener = None
                    self._stopping.wait(1.0)
        except BaseException as error:
            log.exception("projector stopped by an error")
            self._error = error
        finally:
            self._stopping.set()
            if listener is not None:
                listener.close()

    def stop(self) -> None:
        self._stopping.set()

    def run_forever(self, timeout: float | None = None) -> None:
        """Block until stopped or failed; re-raise the thread's error."""
        self._stopping.wait(timeout)
        self._raise()

    def wait(self, notification_id: int | None, timeout: float = 1.0) -> None:
        """Block until every projection has tracked `notification_id`, or fail."""
        deadline = time.monotonic() + timeout
        for projection in self.projections:
            while not projection.view.has_tracking_id(APPLICATION, notification_id):
                if self._stopping.wait(0.02):
                    self._raise()
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{projection.name} did not reach {notification_id}")
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> BatchRunner:
        return self if self._thread else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join()
        if self.close_app:
            self.app.close()
        self._raise()

