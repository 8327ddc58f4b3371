"""The relay's fair dispatch: holds ready stage attempts and sends them in turn, within limits.

Every stage attempt the relay makes ready goes through here (docs/architecture.md §3.7):
it is held, and released when its tenant runs fewer than its `max_running` and fewer
than `window` attempts are in flight in total, organisations taking turns
(`relay/fair.py`). An attempt stays in flight until the relay relays its outcome
(`ended_attempts`). The held and in-flight attempts are written to `relay_dispatches`
in the transaction of the batch that changed them, with the relay's position, so a
relay that starts rebuilds exactly what its predecessor had decided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

from conveyor.aggregates import Job
from conveyor.relay.fair import Dispatch, FairQueue, Key, Limits
from conveyor.store.dispatches import DispatchStore
from conveyor.tenancy import DEFAULT_PRIORITY, TenantSettings

__all__ = ["Admission", "TenantLimits", "ended_attempts"]

# Events that end the attempt they name: an outcome, a recovery, or the re-dispatch of a
# lost message. A pause ends it too: waiting for an outside event does not count against a
# tenant's limit.
_ENDS_ATTEMPT = (Job.StageCompleted, Job.StageFailed, Job.Paused, Job.Recovered,
                 Job.StageDeferred, Job.StageRedispatched)
# Events that end every attempt of their job. A migration does too: the attempts it made
# ready again (with fresh numbers, for the new version's queue) are held anew.
_ENDS_JOB = (Job.Completed, Job.Failed, Job.Cancelled, Job.Migrated)


def ended_attempts(event: Any) -> Key | bool | None:
    """The attempt `event` ends (a `Key`), True if it ends all its job's, else None.

    The one home of the rule. A deferral by a rate limit ends its attempt's slot too: the
    timer that sends the attempt again at its time holds it anew.
    """
    if isinstance(event, _ENDS_ATTEMPT):
        return Key(event.originator_id, event.stage, event.attempt)
    return True if isinstance(event, _ENDS_JOB) else None


class TenantLimits:
    """Each organisation's `max_running` and priority, read again at most once a poll."""

    def __init__(self, read_all: Callable[[], dict[str, TenantSettings]],
                 defaults: TenantSettings, clock: Callable[[], datetime],
                 max_age: float) -> None:
        self.read_all = read_all
        self.defaults = defaults
        self.clock = clock
        self.max_age = max_age
        self._settings: dict[str, TenantSettings] = {}
        self._read_at: datetime | None = None

    def __call__(self, organization: str) -> Limits:
        now = self.clock()
        if self._read_at is None or (now - self._read_at).total_seconds() >= self.max_age:
            self._settings = self.read_all()
            self._read_at = now
        settings = self._settings.get(organization, self.defaults)
        return Limits(settings.max_running, settings.priority or DEFAULT_PRIORITY)


class Admission:
    """The relay's held queue and in-flight counts, kept in memory and in `relay_dispatches`."""

    def __init__(self, limits: Callable[[str], Limits], window: int | None,
                 clock: Callable[[], datetime]) -> None:
        self.limits = limits
        self.window = window
        self.clock = clock
        self.store = DispatchStore()
        self.queue: FairQueue | None = None
        # The in-flight attempts found when the queue was rebuilt, to send again.
        self._resend: list[Key] = []

    def load(self, curs: Cursor[DictRow]) -> FairQueue:
        """The queue, rebuilt from the table the first time, and after `forget`."""
        if self.queue is None:
            queue = FairQueue()
            for dispatch, sent in self.store.load(curs):
                if sent:
                    queue.sent(dispatch.key, dispatch.organization)
                    self._resend.append(dispatch.key)
                else:
                    queue.hold(dispatch)
            self.queue = queue
        return self.queue

    def forget(self) -> None:
        """Drop what this batch changed in memory: its transaction did not commit."""
        self.queue = None
        self._resend = []
        self.store.discard()

    def hold(self, curs: Cursor[DictRow], job: Job | None,
             attempts: Iterable[tuple[str, int]]) -> None:
        """Hold the attempts of `job` its latest event made ready."""
        if job is None:
            return
        queue = self.load(curs)
        at = self.clock()
        for stage, attempt in attempts:
            dispatch = Dispatch(Key(job.id, stage, attempt), job.organization or "",
                                job.priority or 0, at)
            if queue.hold(dispatch):
                self.store.held(dispatch)

    def observe(self, curs: Cursor[DictRow], event: Any) -> None:
        """End the attempts whose outcome (or whose job's end) `event` is."""
        ended = ended_attempts(event)
        if ended is None:
            return
        queue = self.load(curs)
        keys = queue.keys_of(event.originator_id) if ended is True else [ended]
        for key in keys:
            if isinstance(key, Key) and queue.end(key):
                self.store.ended(key)

    def release(self, curs: Cursor[DictRow]) -> list[Key]:
        """The attempts to send once the batch commits, recorded as in flight with its changes.

        The held attempts whose turn it is and, once after the queue was rebuilt, every
        attempt the table says is in flight: their messages may not have gone out before
        the last relay stopped, and a copy of one that is running is a no-op (its lease).
        """
        queue = self.load(curs)
        at = self.clock()
        released = queue.release(self.limits, self.window)
        for dispatch in released:
            self.store.sent(dispatch, at)
        again, self._resend = self._resend, []
        for key in again:  # sent now: a lost message is counted from its last send (§4.3)
            self.store.resent(key, at)
        self.store.flush(curs)
        return again + [d.key for d in released]
