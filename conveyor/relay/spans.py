"""The spans the relay exports from the job events it follows: waits, lost attempts, job ends.

These spans have no process of their own to live in: a wait holds no worker, a vanished
worker never ends its attempt's span, and a job ends in whichever process recorded its
last event. The relay reads each of these events once, in log order, so it is where
their spans are made, with the times the events recorded (docs/architecture.md §13).
They are exported once the relay's batch is recorded, so a replayed batch does not
export its spans twice, short of a crash between the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor import tracing
from conveyor.aggregates import AttemptOutcome, Job, Status


@dataclass(frozen=True)
class Ended:
    """A span whose start and end are known: what `tracing.record` exports."""

    name: str
    parent: str
    start: datetime
    end: datetime
    attributes: dict[str, str | int | float | bool]
    links: tuple[str | None, ...] = ()
    error: str | None = None

    def export(self) -> None:
        tracing.record(self.name, parent=self.parent, start=self.start, end=self.end,
                       attributes=self.attributes, links=self.links, error=self.error)


def span_of(job: Job | None, event: Any) -> Ended | None:
    """The span `event` ends on `job` (the job after the event), if it ends one and the
    job is traced: a wait resumed or timed out, an attempt recovered, the job finished."""
    if job is None or job.traceparent is None or not tracing.enabled():
        return None
    if isinstance(event, Job.Resumed | Job.WaitTimedOut):
        return _wait(job, event)
    if isinstance(event, Job.Recovered):
        return _recovered(job, event)
    if isinstance(event, Job.Completed | Job.Failed | Job.Cancelled):
        return _finished(job, event)
    return None


def _attributes(job: Job, **more: str | int) -> dict[str, str | int | float | bool]:
    return {"conveyor.job_id": str(job.id), "conveyor.workflow": job.workflow,
            **{f"conveyor.{k}": v for k, v in more.items()}}


def _wait(job: Job, event: Job.Resumed | Job.WaitTimedOut) -> Ended | None:
    """The wait from its `Paused` to the event that resumed it, linked to that event's trace."""
    paused = next((a for a in reversed(job.attempt_log)
                   if a.stage == event.stage and a.outcome is AttemptOutcome.PAUSED), None)
    if paused is None or paused.finished_at is None:
        return None
    resumed = isinstance(event, Job.Resumed)
    more: dict[str, str | int] = {"stage": event.stage, "attempt": paused.attempt,
                                  "outcome": "resumed" if resumed else "timed_out"}
    if isinstance(event, Job.Resumed):
        more["event_id"] = event.event_id
    return Ended(f"wait {event.stage}", str(job.traceparent), paused.finished_at,
                 event.timestamp, _attributes(job, **more),
                 links=(event.traceparent,) if isinstance(event, Job.Resumed) else ())


def _recovered(job: Job, event: Job.Recovered) -> Ended | None:
    """The attempt whose worker vanished: its own span never ends, so this one says so."""
    lost = next((a for a in reversed(job.attempt_log)
                 if a.stage == event.stage and a.attempt == event.attempt), None)
    if lost is None:
        return None
    return Ended(f"stage {event.stage}", str(job.traceparent), lost.started_at, event.at,
                 _attributes(job, stage=event.stage, attempt=event.attempt,
                             outcome=str(AttemptOutcome.RECOVERED)),
                 error="no outcome: its worker vanished, the stage is dispatched again")


def _finished(job: Job, event: Job.Completed | Job.Failed | Job.Cancelled) -> Ended | None:
    """The job's whole run, from its enqueueing to the terminal event."""
    status = job.status
    error = None
    if status is Status.FAILED and job.error is not None:
        error = f"{job.error['stage']}: {job.error['error']}"
    return Ended(f"job {job.workflow}", str(job.traceparent), job.created_on, event.at,
                 _attributes(job, status=str(status)), error=error)
