"""Running one stage attempt: load the job, run its handler, record exactly one outcome."""

from __future__ import annotations

import logging
from datetime import timedelta
from enum import StrEnum
from uuid import UUID

import orjson

from conveyor.aggregates import Classification, Job, TransitionError
from conveyor.application import JobNotFoundError, Jobs
from conveyor.workflows import StageContext, classify

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    SKIPPED = "skipped"  # the job no longer expects this stage and attempt
    COMPLETED = "completed"
    RETRYING = "retrying"
    FAILED = "failed"
    DISCARDED = "discarded"  # the job moved on while the handler ran


def run_stage(jobs: Jobs, job_id: UUID, stage: str, attempt: int) -> Outcome:
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
        resumed_with=job.resumed_with.get(stage),
    )
    started_at = jobs.clock()
    error: BaseException | None = None
    try:
        output = definition.handler(context)
        orjson.dumps(output)  # an output the event store cannot hold is the stage's failure
    except Exception as exc:
        error = exc

    def record(job: Job) -> None:
        now = jobs.clock()
        job.start_stage(stage, attempt, at=started_at)
        if error is None:
            job.complete_stage(stage, attempt, output, at=now)
            return
        classification = classify(error, definition.retry.never_retry)
        delay = None
        if classification is Classification.RETRYABLE:
            delay = definition.retry.delay(job.failures[stage] + 1)
        job.fail_stage(
            stage,
            attempt,
            classification,
            error=f"{type(error).__name__}: {error}",
            at=now,
            retry_at=None if delay is None else now + timedelta(seconds=delay),
        )

    try:
        job = jobs.update(job_id, record)
    except TransitionError:
        # Cancelled, recovered or done by a racing copy while the handler ran:
        # the first outcome in the log stands, this one is dropped.
        return Outcome.DISCARDED
    if error is None:
        return Outcome.COMPLETED
    return Outcome.RETRYING if stage in job.retry_at else Outcome.FAILED
