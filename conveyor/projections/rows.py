"""The read models' rows, derived from a Job aggregate's state: no second copy of its rules.

The `jobs` row, the stage attempts of `job_history` and the metrics are all computed
from the job as its own mutators left it (see `conveyor.changes`), by the live
projector and by a rebuild alike, so they cannot disagree with the aggregate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.aggregates import Job
from conveyor.aggregates.stages import Attempt, AttemptOutcome

Row = dict[str, Any]

# The `jobs` table's columns, in its order.
JOB_COLUMNS = (
    "job_id", "workflow", "status", "platform", "repository", "pull_request", "head_commit",
    "trigger", "plan", "stage_states", "current_stages", "stages", "error", "next_attempt_at",
    "version", "created_at", "started_at", "finished_at", "updated_at", "stage_attempts",
    "retry_at", "attempt", "waiting_for", "retries", "recoveries", "correlation_id",
    "organization", "team", "outputs", "result", "workflow_version",
)
JOB_JSON = frozenset({"trigger", "plan", "stage_states", "stages", "error", "stage_attempts",
                      "retry_at", "waiting_for", "outputs", "result"})
ATTEMPT_COLUMNS = ("job_id", "started_version", "stage", "attempt", "started_at", "finished_at",
                   "duration_ms", "outcome", "classification", "error")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def job_row(job: Job) -> Row:
    """The `jobs` row of a job: what the API lists and shows."""
    trigger = job.trigger
    finished = job.terminal is not None
    runs = job.runs
    current = job.current_stages()
    retry_at = {} if finished else {
        s: run.retry_at for s, run in runs.items() if run.retry_at is not None}
    return {
        "job_id": job.id, "workflow": job.workflow, "status": str(job.status),
        "platform": _text(trigger.get("platform")),
        "repository": _text(trigger.get("repository")),
        "pull_request": _text(trigger.get("pull_request")),
        "head_commit": _text(trigger.get("head_commit")),
        "trigger": {k: v for k, v in trigger.items() if k != "raw_body"},
        "plan": job.plan,
        "stage_states": {s: str(run.state) for s, run in runs.items()},
        "current_stages": current,
        "stages": [attempt_entry(a) for a in job.attempt_log],
        "error": job.last_error,
        "next_attempt_at": min(retry_at.values(), default=None),
        "version": job.version,
        "created_at": job.created_on, "started_at": job.started_at,
        "finished_at": job.finished_at, "updated_at": job.modified_on,
        "stage_attempts": {s: run.attempt for s, run in runs.items()},
        "retry_at": {s: at.isoformat() for s, at in retry_at.items()},
        "attempt": max((runs[s].attempt for s in current),
                       default=max((run.attempt for run in runs.values()), default=1)),
        "waiting_for": waiting_for(job),
        "retries": sum(run.retries for run in runs.values()),
        "recoveries": sum(run.recoveries for run in runs.values()),
        "correlation_id": job.correlation_id,
        "organization": job.organization, "team": job.team,
        "outputs": job.outputs, "result": job.result,
        "workflow_version": job.workflow_version,
    }


def waiting_for(job: Job) -> list[dict[str, Any]]:
    """What the job's stages wait for: an outside event (`kind` "event") or, held back by
    a rate limit, their tenant's resource (`kind` "rate_limit")."""
    waits: list[dict[str, Any]] = []
    for stage, run in job.runs.items():
        if run.wait is not None:
            waits.append({"kind": "event", "stage": stage, "event_type": run.wait["event_type"],
                          "key": run.wait["key"], "deadline": run.wait["deadline"].isoformat()})
        elif run.deferral is not None and job.terminal is None:
            waits.append({"kind": "rate_limit", "stage": stage,
                          "resource": run.deferral["resource"],
                          "until": run.deferral["until"].isoformat()})
    return waits


def attempt_entry(attempt: Attempt) -> dict[str, Any]:
    """One attempt as the `jobs` row lists it: a retried failure shows as failed."""
    status = attempt.outcome
    if status is AttemptOutcome.RETRY_SCHEDULED:
        status = AttemptOutcome.FAILED
    entry: dict[str, Any] = {"stage": attempt.stage, "attempt": attempt.attempt,
                             "status": str(status),
                             "started_at": attempt.started_at.isoformat()}
    if attempt.finished_at is not None:
        entry["finished_at"] = attempt.finished_at.isoformat()
    if attempt.error is not None:
        entry.update(error=attempt.error, classification=attempt.classification)
    return entry


def attempt_row(job: Job, attempt: Attempt) -> Row:
    """One attempt as the `job_stage_attempts` table keeps it."""
    return {
        "job_id": job.id, "started_version": attempt.started_version, "stage": attempt.stage,
        "attempt": attempt.attempt, "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "duration_ms": None if attempt.finished_at is None else _ms(attempt.started_at,
                                                                     attempt.finished_at),
        "outcome": str(attempt.outcome), "classification": attempt.classification,
        "error": attempt.error,
    }


def attempts_changed(job: Job, since: int) -> list[Attempt]:
    """The attempts that started or ended with the job's events after version `since`."""
    return [a for a in job.attempt_log
            if a.started_version > since or (a.ended_version or 0) > since]


def attempt_ended_at(job: Job, version: int) -> Attempt | None:
    """The attempt the job's event of `version` ended, if it ended one."""
    for attempt in job.attempt_log:
        if attempt.ended_version == version:
            return attempt
    return None


def event_time(event: Any) -> datetime:
    """When it happened: the event's own `at` where it has one, else when it was recorded."""
    at = getattr(event, "at", None)
    return at if isinstance(at, datetime) else event.timestamp


def _ms(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() * 1000
