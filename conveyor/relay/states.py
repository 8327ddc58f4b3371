"""Jobs as the relay has read them from the log, to tell which stages an event made ready."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from uuid import UUID

from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.attempts import ready


class JobStates:
    """Jobs as the log has described them so far, so most events need no database read."""

    def __init__(self, jobs: Jobs, capacity: int = 10_000) -> None:
        self.jobs = jobs
        self.capacity = capacity
        self._cache: OrderedDict[UUID, Job] = OrderedDict()

    def apply(self, event: Any) -> tuple[set[tuple[str, int]], Job]:
        """Apply `event`; return the stage attempts that were ready before, and the job after."""
        job_id: UUID = event.originator_id
        version: int = event.originator_version
        before = self._cache.pop(job_id, None)
        if before is not None and before.version != version - 1:
            before = None
        if before is None and version > 1:
            before = self.jobs.repository.get(job_id, version=version - 1)
        # mutate() changes the job in place: take what we need of "before" first.
        ready_before = ready(before)
        after: Job = event.mutate(before)
        if not after.status.is_terminal:
            self._cache[job_id] = after
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return ready_before, after

    def correlation_id(self, job_id: UUID) -> str | None:
        """The correlation id of a job in the cache, for the messages sent for it."""
        job = self._cache.get(job_id)
        value = getattr(job, "correlation_id", None) if job is not None else None
        return value if isinstance(value, str) else None
