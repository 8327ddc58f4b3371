"""Following the log: each Job event applied to the job it changes, by the aggregate itself.

The relay and the projections both need to know what an event did to its job. Neither
re-implements the job's rules: they replay the event onto the job with its own mutator
(`event.mutate`), keeping recently seen jobs in memory so most events need no read,
and reading the job's stream up to the event only on a miss or a gap.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from conveyor.aggregates import Job, Status

log = logging.getLogger(__name__)

# Every event class of the Job aggregate; the log also holds other aggregates' events.
JOB_EVENTS: tuple[type[Any], ...] = tuple(
    v for v in vars(Job).values() if isinstance(v, type) and issubclass(v, Job.Event)
)

Load = Callable[[UUID, int], Job | None]


@dataclass(frozen=True)
class Change:
    """One Job event, the job after it, and what the job was before it."""

    event: Any
    # The job after the event. The follower goes on applying later events to this same
    # object, so read a batch's changes after the batch: it is the job at the batch's end.
    job: Job
    status_before: Status | None
    ready_before: frozenset[tuple[str, int]]


def ready(job: Job | None) -> frozenset[tuple[str, int]]:
    """The stage attempts `job` may dispatch now."""
    if job is None:
        return frozenset()
    return frozenset((stage, job.runs[stage].attempt) for stage in job.ready_stages())


class JobFollower:
    """Jobs as the log has described them so far, changed event by event in log order."""

    def __init__(self, load: Load | None, capacity: int | None = 4096) -> None:
        # `load(job_id, version)` reads a job as of a version; None: every job's whole
        # stream is followed from its first event (a rebuild from position zero).
        self.load = load
        self.capacity = capacity
        self.jobs: OrderedDict[UUID, Job] = OrderedDict()

    def apply(self, event: Any) -> Change | None:
        """Apply a Job event; None for other aggregates' events and unknown jobs."""
        if not isinstance(event, JOB_EVENTS):
            return None
        job_id: UUID = event.originator_id
        version: int = event.originator_version
        before = self.jobs.pop(job_id, None)
        if before is not None and before.version != version - 1:
            before = None
        if before is None and version > 1:
            if self.load is None:
                log.error("event %s v%s of job %s, whose earlier events were not followed",
                          type(event).__name__, version, job_id)
                return None
            before = self.load(job_id, version - 1)
            if before is None:
                log.error("event %s v%s of job %s, which the store lacks; skipped",
                          type(event).__name__, version, job_id)
                return None
        status_before = before.status if before is not None else None
        ready_before = ready(before)
        # mutate() changes the job in place: what was needed of "before" is taken.
        after: Job = event.mutate(before)
        if self.capacity is None or not after.status.is_terminal:
            self.jobs[job_id] = after
            if self.capacity is not None:
                while len(self.jobs) > self.capacity:
                    self.jobs.popitem(last=False)
        return Change(event, after, status_before, ready_before)

    def apply_all(self, events: list[Any]) -> list[Change]:
        """The changes of the Job events among `events`, in order."""
        return [c for c in map(self.apply, events) if c is not None]


def loader(repository: Any) -> Load:
    """Reads a job as of a version from an eventsourcing repository; None if it is not there."""

    def load(job_id: UUID, version: int) -> Job | None:
        try:
            job: Job = repository.get(job_id, version=version)
        except AggregateNotFoundError:
            return None
        return job

    return load


def final_jobs(changes: Sequence[Change]) -> dict[UUID, Job]:
    """Each changed job as the last of `changes` left it."""
    return {c.job.id: c.job for c in changes}
