"""The wait matcher: pauses and outside events, matched in log order.

Its state (open waits, their deadlines, and outside events kept for the retention
window) is written through the stores on the relay's cursor, inside the relay's batch
transaction together with the relay's position, so it is exactly what the log up to
that position says. Resuming and timing out go through `Jobs`: whichever of Resumed,
WaitTimedOut or Cancelled reaches a wait's job first wins, and the others are refused.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow

from conveyor.aggregates import Job, OutsideEvent, TransitionError
from conveyor.application import Jobs
from conveyor.store.timers import Timer, TimerKind, TimerStore
from conveyor.store.waits import Wait, WaitStore

log = logging.getLogger(__name__)


class Matcher:
    """Keeps the waits and resumes jobs whose awaited event is in the log."""

    def __init__(self, jobs: Jobs, retention: timedelta, timers: TimerStore) -> None:
        self.jobs = jobs
        self.retention = retention
        self.waits = WaitStore()
        self.timers = timers

    def paused(self, curs: Cursor[DictRow], event: Job.Paused, organization: str | None) -> None:
        """Open the wait of a job of `organization` and its deadline; an event kept from
        before resumes it at once, if it was sent for that organisation or for all, and has
        not resumed a wait of this job already (docs/architecture.md §5.3)."""
        job_id = event.originator_id
        self.waits.open(curs, Wait(job_id, event.stage, event.attempt, event.event_type,
                                   event.key, event.deadline, event.at, organization,
                                   event.originator_version))
        self.timers.set(curs, [Timer(job_id, event.stage, event.attempt, event.deadline,
                                     TimerKind.WAIT)])
        since = event.at - self.retention
        early = self.waits.earliest_kept(curs, event.event_type, event.key, since, organization)
        if early is not None:
            # Read from the store, not the relay's follower: this batch may have resumed
            # another of the job's waits with it.
            used = self.jobs.get(job_id).resumed_by
            if early.event_id in used:
                early = self.waits.earliest_kept(curs, event.event_type, event.key, since,
                                                 organization, excluding=used)
        if early is not None:
            self._resume(curs, job_id, event.stage, event.attempt, early.event_id, early.payload,
                         early.traceparent)

    def received(self, curs: Cursor[DictRow], event: OutsideEvent.Received) -> None:
        """Keep the event, and resume every job waiting for its type and key, of the
        organisations it was sent for (docs/architecture.md §5.2): a job's first wait for
        them in the log, the others waiting for the next such event (§5.3)."""
        self.waits.keep(curs, event.event_id, event.event_type, event.key, event.payload,
                        received_at=event.timestamp, organizations=event.organizations,
                        traceparent=event.traceparent)
        resumed: set[UUID] = set()
        for waiting in self.waits.waiting_for(curs, event.event_type, event.key,
                                              event.organizations):
            if waiting.job_id not in resumed and self._resume(
                    curs, *waiting, event.event_id, event.payload, event.traceparent):
                resumed.add(waiting.job_id)

    def closed(self, curs: Cursor[DictRow], job_id: UUID, stage: str | None) -> None:
        """The job's wait at `stage` ended, or the job did: forget its waits and deadlines."""
        self.waits.close(curs, job_id, stage)
        if stage is None:
            self.timers.delete_waits(curs, job_id)

    def renamed(self, curs: Cursor[DictRow], job_id: UUID, renamed: dict[str, str]) -> None:
        """A migration renamed the job's stages: their open waits take the new names."""
        if renamed:
            self.waits.rename(curs, job_id, renamed)

    def _resume(
        self,
        curs: Cursor[DictRow],
        job_id: UUID,
        stage: str,
        attempt: int,
        event_id: str,
        payload: Any,
        traceparent: str | None,
    ) -> bool:
        """Resume the wait; False if the job refused (the wait ended first)."""
        try:
            self.jobs.resume_wait(job_id, stage, attempt, event_id, payload, traceparent)
        except TransitionError as refused:
            log.info("wait of job %s at %s not resumed: %s", job_id, stage, refused)
            return False
        finally:
            self.closed(curs, job_id, stage)
        return True

    def time_out(self, job_id: UUID, stage: str, attempt: int, at: datetime) -> None:
        """A wait's deadline came: apply its on-timeout policy unless it already ended."""
        try:
            self.jobs.time_out_wait(job_id, stage, attempt, at)
        except TransitionError as refused:
            log.info("wait of job %s at %s not timed out: %s", job_id, stage, refused)

    def forget_expired(self, curs: Cursor[DictRow], before: datetime) -> None:
        """Outside events past retention resume nothing any more."""
        self.waits.forget_kept(curs, before)
