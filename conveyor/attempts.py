"""One stage attempt as its job sees it: the context its handler is given, and what
the job records for what the handler did.

The job's rules stay in the aggregate; what lives here is the stage's policy
(classification, backoff, `Retry-After`) applied to the handler's result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from conveyor.aggregates import Classification, Job
from conveyor.store.leases import Lease
from conveyor.workflows import Pause, Stage, StageContext, classify
from conveyor.workflows.failures import retry_after


@dataclass(frozen=True)
class Returned:
    """The handler returned `output`, which the event store can hold."""

    output: Any


@dataclass(frozen=True)
class Paused:
    """The handler returned a `Pause`: free the worker until an outside event."""

    pause: Pause


@dataclass(frozen=True)
class Raised:
    """The handler raised `error` (or returned what the event store cannot hold)."""

    error: Exception


@dataclass(frozen=True)
class Deferred:
    """A tenant's rate limit holds the attempt back until `until`; the attempt is not spent.

    `ran` says whether the handler ran first (its service answered "too many requests"),
    so the attempt's start is recorded; else its tokens did not fit and it never started.
    """

    resource: str
    until: datetime
    ran: bool = False


HandlerResult = Returned | Paused | Raised | Deferred


@dataclass(frozen=True)
class StageRun:
    """A stage attempt whose handler has run: what its job is to record, and its lease."""

    job_id: UUID
    stage: str
    attempt: int
    started_at: datetime
    result: HandlerResult
    # The copy of the job the worker read before running the handler, if any.
    loaded: Job | None = None

    @property
    def lease(self) -> Lease:
        return Lease(self.job_id, self.stage, self.attempt)


class Outcome(StrEnum):
    """What a `run_stage` message came to, as the worker logs and counts it."""

    SKIPPED = "skipped"  # the job no longer expects this stage and attempt
    COMPLETED = "completed"
    PAUSED = "paused"
    RETRYING = "retrying"
    FAILED = "failed"
    DEFERRED = "deferred"  # held back by a rate limit, the same attempt dispatched later
    DISCARDED = "discarded"  # the job moved on while the handler ran
    FORWARDED = "forwarded"  # the job's workflow version is not this worker's: sent to its queue


def context_for(job: Job, stage: str, attempt: int) -> StageContext:
    """What the handler of `stage` is told about its job."""
    return StageContext(
        job_id=job.id,
        stage=stage,
        attempt=attempt,
        trigger=job.trigger,
        outputs=dict(job.outputs),
        resumed_with=job.runs[stage].resumed_with,
        woken=job.runs[stage].woken,
    )


def record(
    job: Job,
    definition: Stage,
    attempt: int,
    started_at: datetime,
    result: HandlerResult,
    now: datetime,
) -> Outcome:
    """Record the attempt's start and result on `job`, as its stage's policy says.

    A failure is classified; a retryable one is retried after the policy's backoff,
    or after the `Retry-After` a throttling service asked for when that is longer. An
    attempt a rate limit deferred before it ran records no start.
    """
    stage = definition.name
    if not (isinstance(result, Deferred) and not result.ran):
        job.start_stage(stage, attempt, at=started_at)
    match result:
        case Deferred(resource, until):
            job.defer(stage, attempt, resource, until, at=now)
            return Outcome.DEFERRED
        case Returned(output):
            job.complete_stage(stage, attempt, output, at=now)
            return Outcome.COMPLETED
        case Paused(pause):
            job.pause(
                stage, attempt, pause.event_type, pause.key,
                deadline=now + timedelta(seconds=pause.timeout), at=now,
                on_timeout=pause.on_timeout,
                request=dict(pause.request) if pause.request is not None else None,
            )
            return Outcome.PAUSED
        case Raised(error):
            return _fail(job, definition, attempt, error, now)


def _fail(job: Job, definition: Stage, attempt: int, error: Exception, now: datetime) -> Outcome:
    stage = definition.name
    classification = classify(error, definition.retry.never_retry)
    if classification is Classification.CANCELLED:
        job.cancel(reason=f"cancelled by stage {stage}: {error}", by=f"stage:{stage}", at=now)
        return Outcome.FAILED
    delay = None
    if classification is Classification.RETRYABLE:
        delay = definition.retry.delay(job.runs[stage].failures + 1)
        asked = retry_after(error, now)
        if delay is not None and asked is not None:
            delay = max(delay, asked)  # a 429's Retry-After is honoured in full
    job.fail_stage(
        stage,
        attempt,
        classification,
        error=f"{type(error).__name__}: {error}",
        at=now,
        retry_at=None if delay is None else now + timedelta(seconds=delay),
    )
    return Outcome.FAILED if delay is None else Outcome.RETRYING

