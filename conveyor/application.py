"""The command side: enqueue jobs and record what happens to them, in the event store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import EnvType

from conveyor.aggregates import Job, job_id_for
from conveyor.workflows import WORKFLOWS, Workflow

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Enqueued:
    """The answer to an enqueue: the job's id, and whether this call created it."""

    job_id: UUID
    created: bool


class Jobs(Application[UUID]):
    """Jobs, stored as events; every method takes and returns ids and plain values."""

    name = "Jobs"
    # Optimistic-concurrency conflicts are retried by reloading this many times.
    max_conflicts = 20

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        workflows: Mapping[str, Workflow] = WORKFLOWS,
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(env)
        self.workflows = workflows
        self.clock = clock

    def enqueue(
        self,
        workflow: str,
        key: str,
        trigger: dict[str, Any],
        correlation_id: str | None = None,
        delivery: dict[str, Any] | None = None,
    ) -> Enqueued:
        """Start a job for `key`, or return the job that key already started."""
        try:
            plan = self.workflows[workflow].plan()
        except KeyError:
            raise UnknownWorkflowError(f"no workflow named {workflow!r}") from None
        job = Job(
            key=key,
            workflow=workflow,
            plan=plan,
            trigger=trigger,
            correlation_id=correlation_id,
            delivery=delivery,
        )
        try:
            self.save(job)
        except IntegrityError:
            # The unique (originator_id, originator_version) refused a second
            # Enqueued: the same key was enqueued before (DESIGN 3.3).
            return Enqueued(job_id_for(key), created=False)
        return Enqueued(job.id, created=True)

    def get(self, job_id: UUID) -> Job:
        try:
            job: Job = self.repository.get(job_id)
        except AggregateNotFoundError:
            raise JobNotFoundError(f"no job {job_id}") from None
        return job

    def update(self, job_id: UUID, command: Callable[[Job], None]) -> Job:
        """Apply `command` to the job and save; on a conflict, reload and decide again."""
        for _ in range(self.max_conflicts):
            job = self.get(job_id)
            command(job)
            try:
                self.save(job)
            except IntegrityError:
                continue
            return job
        raise ConflictError(f"job {job_id} kept changing under {self.max_conflicts} attempts")

    def cancel(
        self, job_id: UUID, reason: str, by: str, correlation_id: str | None = None
    ) -> None:
        self.update(job_id, lambda job: job.cancel(
            reason=reason, by=by, at=self.clock(), correlation_id=correlation_id))

    def retry(self, job_id: UUID, by: str, correlation_id: str | None = None) -> None:
        self.update(job_id, lambda job: job.retry(
            by=by, at=self.clock(), correlation_id=correlation_id))


class JobsError(Exception):
    """Base of the command side's errors."""


class JobNotFoundError(JobsError):
    """Raised when a command names a job id the event store does not hold."""


class UnknownWorkflowError(JobsError):
    """Raised when a job is enqueued for a workflow that is not registered."""


class ConflictError(JobsError):
    """Raised when a job changed under every one of a command's reload-and-retry attempts."""
