"""Running one stage attempt: load the job, run its handler, record exactly one outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

import orjson

from conveyor import tracing
from conveyor.application import JobNotFoundError, Jobs
from conveyor.attempts import HandlerResult, Outcome, Paused, Raised, Returned, context_for
from conveyor.errors import ConveyorError
from conveyor.rate_gate import RateGate
from conveyor.store import datastore_of
from conveyor.store.leases import Lease, LeaseStore
from conveyor.workflows import Pause, StageContext
from conveyor.workflows.definition import Stage
from conveyor.workflows.failures import RateLimitedError

log = logging.getLogger(__name__)

# How long past its time limit a stage's lease lasts before the relay recovers it.
LEASE_GRACE_SECONDS = 10.0
# How long a redelivered copy waits for the presence of a holder just killed to end (its
# database session closing) before leaving the attempt to its lease's recovery.
TAKEOVER_PATIENCE_SECONDS = 2.0

__all__ = ["LEASE_GRACE_SECONDS", "Outcome", "run_stage"]


def run_stage(
    jobs: Jobs, job_id: UUID, stage: str, attempt: int,
    lease_grace: float = LEASE_GRACE_SECONDS, gate: RateGate | None = None, *,
    redelivered: bool = False, forward: Callable[[str, str], None] | None = None,
) -> Outcome:
    """Run `stage` of the job if it still expects that attempt; safe to call repeatedly.

    A copy of an attempt that another worker is running is skipped (its lease is live),
    unless RabbitMQ `redelivered` it and that worker is gone (its presence ended). With a
    `gate`, the stage's tokens are taken from its tenant's rate limits first; an attempt
    they hold back is deferred, not run (docs/architecture.md §4.5). A job of a workflow
    version this worker lacks is never run with another version's handler: it is handed to
    `forward(workflow, version)`, or left for the recovery of its lease-less attempt.
    """
    try:
        job = jobs.get(job_id)
    except JobNotFoundError:
        log.warning("run_stage for unknown job %s; acknowledged", job_id)
        return Outcome.SKIPPED
    if not job.expects(stage, attempt):
        return Outcome.SKIPPED
    workflow = jobs.workflows.get(job.workflow)
    version = job.workflow_version  # None: enqueued before versions, any version runs it
    if workflow is None or version not in (None, workflow.version):
        if forward is None or version is None:
            raise WrongVersionError(f"job {job_id} runs on {job.workflow}"
                                    f" v{version or '(none)'}, which this worker lacks")
        forward(job.workflow, version)
        return Outcome.FORWARDED
    span = tracing.current()
    span.set({"conveyor.workflow": job.workflow})
    definition = workflow[stage]
    # Busy until the outcome is saved: the save it joins waits only for other busy stages.
    with jobs.outcomes.busy():
        started_at = jobs.clock()
        deadline = started_at + timedelta(seconds=definition.time_limit + lease_grace)
        leases, lease = LeaseStore(datastore_of(jobs)), Lease(job_id, stage, attempt)
        # The lease is taken only on the job as read: if it moved since (another copy's
        # outcome, or a parallel stage's), decide again on the job as it is now.
        patience = time.monotonic() + (TAKEOVER_PATIENCE_SECONDS if redelivered else 0.0)
        while not leases.take(lease, started_at, deadline, takeover=redelivered,
                              seen=job.version):
            fresh = jobs.get(job_id)
            if not fresh.expects(stage, attempt):
                return Outcome.SKIPPED  # not this one's turn (any more)
            if fresh.version == job.version:  # another worker holds it
                if time.monotonic() >= patience:
                    if redelivered:
                        log.info("redelivered %s %s attempt %d: its lease's holder is still"
                                 " present; left to the lease's recovery", job_id, stage,
                                 attempt)
                    return Outcome.SKIPPED
                time.sleep(0.1)
            job = fresh
        context = context_for(job, stage, attempt)
        held = None if gate is None else gate.admit(job, definition, context, started_at)
        result: HandlerResult
        if held is not None:
            result = held
        else:
            result = run_handler(definition, context)
            if gate is not None and isinstance(result, Raised) and isinstance(
                    result.error, RateLimitedError):
                result = gate.throttled(job, definition, context, result.error, jobs.clock())
        if isinstance(result, Raised):
            span.fail(f"{type(result.error).__name__}: {result.error}")
        # The lease is released by the outcome's save (or on its own when the outcome is
        # refused), and not before: a worker interrupted in the handler, or whose save
        # fails, leaves its lease for the relay to recover.
        return jobs.record_stage_outcome(job_id, stage, attempt, started_at, result,
                                         loaded=job)


def run_handler(definition: Stage, context: StageContext) -> HandlerResult:
    """Call the stage's handler; its exceptions are results, to be classified."""
    try:
        output = definition.handler(context)
        # An output the event store cannot hold is the stage's failure.
        orjson.dumps(output.request if isinstance(output, Pause) else output)
    except Exception as exc:
        return Raised(exc)
    return Paused(output) if isinstance(output, Pause) else Returned(output)


class WrongVersionError(ConveyorError):
    """Raised when a stage of a workflow version this worker lacks reaches it unforwardable."""
