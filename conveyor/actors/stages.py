"""Running one stage attempt: load the job, run its handler, record exactly one outcome."""

from __future__ import annotations

import logging
from datetime import timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

import orjson

from conveyor.actors.leases import release_lease, take_lease
from conveyor.aggregates import Classification, Job, TransitionError
from conveyor.application import JobNotFoundError, Jobs
from conveyor.workflows import Pause, StageContext, classify
from conveyor.workflows.failures import retry_after

log = logging.getLogger(__name__)

# How long past its time limit a stage's lease lasts before the relay recovers it.
LEASE_GRACE_SECONDS = 10.0


class Outcome(StrEnum):
    SKIPPED = "skipped"  # the job no longer expects this stage and attempt
    COMPLETED = "completed"
    PAUSED = "paused"
    RETRYING = "retrying"
    FAILED = "failed"
    DISCARDED = "discarded"  # the job moved on while the handler ran


def run_stage(
    jobs: Jobs, job_id: UUID, stage: str, attempt: int,
    lease_grace: float = LEASE_GRACE_SECONDS,
) -> Outcome:
    """Run `stage` of the job if it still expects that attempt; safe to call repeatedly."""
    try:
        job = jobs.get(job_id)
    except JobNotFoundError:
        log.warning("run_stage for unknown job %s; acknowledged", job_id)
        return Outcome.SKIPPED
    if not job.expects(stage, attempt):
        return Outcome.SKIPPED

    definition = jobs.workflows[job.workflow][stage]
    context = StageContext(
        job_id=job_id,
        stage=stage,
        attempt=attempt,
        trigger=job.trigger,
        outputs=dict(job.outputs),
        resumed_with=job.runs[stage].resumed_with,
        woken=job.runs[stage].woken,
    )
    started_at = jobs.clock()
    lease_deadline = started_at + timedelta(seconds=definition.time_limit + lease_grace)
    take_lease(jobs, job_id, stage, attempt, started_at, lease_deadline)
    error: BaseException | None = None
    output: Any = None
    try:
        output = definition.handler(context)
        # An output the event store cannot hold is the stage's failure.
        orjson.dumps(output if not isinstance(output, Pause) else output.request)
    except Exception as exc:
        error = exc

    def record(job: Job) -> None:
        now = jobs.clock()
        job.start_stage(stage, attempt, at=started_at)
        if isinstance(output, Pause):
            job.pause(
                stage, attempt, output.event_type, output.key,
                deadline=now + timedelta(seconds=output.timeout), at=now,
                on_timeout=output.on_timeout,
                request=dict(output.request) if output.request is not None else None,
            )
            return
        if error is None:
            job.complete_stage(stage, attempt, output, at=now)
            return
        classification = classify(error, definition.retry.never_retry)
        if classification is Classification.CANCELLED:
            job.cancel(reason=f"cancelled by stage {stage}: {error}", by=f"stage:{stage}", at=now)
            return
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

    try:
        job = jobs.update(job_id, record, loaded=job)
    except TransitionError:
        # Cancelled, recovered or done by a racing copy while the handler ran:
        # the first outcome in the log stands, this one is dropped.
        return Outcome.DISCARDED
    finally:
        release_lease(jobs, job_id, stage, attempt)
    if isinstance(output, Pause):
        return Outcome.PAUSED
    if error is None:
        return Outcome.COMPLETED
    return Outcome.RETRYING if job.runs[stage].retry_at is not None else Outcome.FAILED
