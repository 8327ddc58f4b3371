"""One reducer from Job events to a plain row, shared by every read model so they agree."""

from __future__ import annotations

from datetime import datetime
from functools import singledispatch
from typing import Any

from conveyor.aggregates import Job, StageState
from conveyor.aggregates.job import derive_status, ready_stages

Row = dict[str, Any]
_ACTIVE = {StageState.RUNNING, StageState.WAITING, StageState.RETRY_SCHEDULED}
# Events of other aggregates (pull requests, outside events) share the log: skip them.
JOB_EVENTS: tuple[type[Any], ...] = tuple(
    v for v in vars(Job).values() if isinstance(v, type) and issubclass(v, Job.Event)
)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def event_time(event: Any) -> datetime:
    """When it happened: the event's own `at` where it has one, else when it was recorded."""
    at = getattr(event, "at", None)
    return at if isinstance(at, datetime) else event.timestamp


def new_row(event: Job.Enqueued) -> Row:
    """The row of a job just enqueued."""
    trigger, plan = event.trigger, event.plan
    row: Row = {
        "job_id": event.originator_id, "workflow": event.workflow, "status": "PENDING",
        "platform": _text(trigger.get("platform")),
        "repository": _text(trigger.get("repository")),
        "pull_request": _text(trigger.get("pull_request")),
        "head_commit": _text(trigger.get("head_commit")),
        "trigger": {k: v for k, v in trigger.items() if k != "raw_body"}, "plan": plan,
        "stage_states": {s["stage"]: str(StageState.PENDING) for s in plan},
        "stage_attempts": {s["stage"]: 1 for s in plan}, "retry_at": {},
        "current_stages": [], "stages": [], "error": None, "next_attempt_at": None,
        "attempt": 1, "waiting_for": [], "retries": 0, "recoveries": 0,
        "correlation_id": event.correlation_id, "version": event.originator_version,
        "created_at": event.timestamp, "started_at": None, "finished_at": None,
        "updated_at": event.timestamp,
    }
    derive(row)
    return row


def apply(row: Row, event: Any) -> None:
    """Apply one event after `Enqueued` to the row, in place."""
    apply_underived(row, event)
    derive(row)


def apply_underived(row: Row, event: Any) -> None:
    """Apply one event but leave the derived columns for one `derive` after many events.

    No event's handler reads a derived column, so a rebuild derives each row once, at the end.
    """
    _apply(event, row)
    row["version"] = event.originator_version
    row["updated_at"] = event.timestamp


def derive(row: Row) -> None:
    """Recompute the columns that follow from the stage states."""
    finished = row["finished_at"] is not None
    states = row["stage_states"]
    row["status"] = str(derive_status(
        row["plan"], states, started=row["started_at"] is not None,
        terminal=row["status"] if finished else None,
    ))
    ready = set() if finished else set(ready_stages(row["plan"], states))
    current = [] if finished else [
        s["stage"] for s in row["plan"] if s["stage"] in ready or states[s["stage"]] in _ACTIVE
    ]
    row["current_stages"] = current
    attempts = row["stage_attempts"]
    row["attempt"] = max((attempts[s] for s in current), default=max(attempts.values(), default=1))
    retry = [] if finished else [datetime.fromisoformat(v) for v in row["retry_at"].values()]
    row["next_attempt_at"] = min(retry, default=None)


def open_entry(row: Row, stage: str) -> dict[str, Any] | None:
    """The stage's attempt entry that started and has not finished, if any."""
    for entry in reversed(row["stages"]):
        if entry["stage"] == stage:
            return entry if entry["status"] == "running" else None
    return None


def _close(row: Row, stage: str, status: str, at: datetime, **extra: Any) -> None:
    entry = open_entry(row, stage)
    if entry is not None:
        entry.update(status=status, finished_at=at.isoformat(), **extra)


@singledispatch
def _apply(event: Any, row: Row) -> None:
    """Events this reducer does not know change only the version."""


@_apply.register
def _started(event: Job.Started, row: Row) -> None:
    row["started_at"] = row["started_at"] or event.at
    row["stage_states"][event.stage] = str(StageState.RUNNING)
    row["retry_at"].pop(event.stage, None)
    row["stages"].append({"stage": event.stage, "attempt": event.attempt, "status": "running",
                          "started_at": event.at.isoformat()})


@_apply.register
def _stage_completed(event: Job.StageCompleted, row: Row) -> None:
    row["stage_states"][event.stage] = str(StageState.DONE)
    _close(row, event.stage, "completed", event.at)


@_apply.register
def _stage_failed(event: Job.StageFailed, row: Row) -> None:
    retrying = event.retry_at is not None
    stage = event.stage
    row["stage_states"][stage] = str(
        StageState.RETRY_SCHEDULED if retrying else StageState.FAILED)
    if event.retry_at is not None:
        row["stage_attempts"][stage] = event.attempt + 1
        row["retry_at"][stage] = event.retry_at.isoformat()
        row["retries"] += 1
    row["error"] = {"stage": stage, "classification": event.classification,
                    "error": event.error}
    _close(row, stage, "failed", event.at, error=event.error,
           classification=event.classification)


@_apply.register
def _paused(event: Job.Paused, row: Row) -> None:
    row["stage_states"][event.stage] = str(StageState.WAITING)
    row["waiting_for"] = [w for w in row["waiting_for"] if w["stage"] != event.stage] + [{
        "stage": event.stage, "event_type": event.event_type, "key": event.key,
        "deadline": event.deadline.isoformat(),
    }]
    _close(row, event.stage, "paused", event.at)


def _unwait(row: Row, stage: str) -> None:
    row["stage_states"][stage] = str(StageState.PENDING)
    row["waiting_for"] = [w for w in row["waiting_for"] if w["stage"] != stage]


@_apply.register
def _resumed(event: Job.Resumed, row: Row) -> None:
    _unwait(row, event.stage)


@_apply.register
def _wait_timed_out(event: Job.WaitTimedOut, row: Row) -> None:
    _unwait(row, event.stage)


@_apply.register
def _recovered(event: Job.Recovered, row: Row) -> None:
    row["stage_states"][event.stage] = str(StageState.PENDING)
    row["stage_attempts"][event.stage] = event.attempt + 1
    row["retry_at"].pop(event.stage, None)
    row["recoveries"] += 1
    _close(row, event.stage, "recovered", event.at)


@_apply.register
def _retried(event: Job.Retried, row: Row) -> None:
    again = {str(StageState.FAILED), str(StageState.RUNNING), str(StageState.WAITING)}
    for stage, state in list(row["stage_states"].items()):
        if state in again:
            row["stage_states"][stage] = str(StageState.PENDING)
            row["stage_attempts"][stage] += 1
            _close(row, stage, "abandoned", event.at)
    row["waiting_for"] = []
    row["finished_at"] = None
    row["error"] = None


@_apply.register
def _completed(event: Job.Completed, row: Row) -> None:
    _finish(row, "COMPLETED", event.at)


@_apply.register
def _failed(event: Job.Failed, row: Row) -> None:
    row["stage_states"][event.stage] = str(StageState.FAILED)
    row["waiting_for"] = [w for w in row["waiting_for"] if w["stage"] != event.stage]
    _finish(row, "FAILED", event.at, {"stage": event.stage,
                                       "classification": event.classification,
                                       "error": event.error})


@_apply.register
def _cancelled(event: Job.Cancelled, row: Row) -> None:
    for entry in row["stages"]:
        if entry["status"] == "running":
            entry.update(status="cancelled", finished_at=event.at.isoformat())
    _finish(row, "CANCELLED", event.at, {"stage": None, "classification": "CANCELLED",
                                          "error": event.reason, "by": event.by})


def _finish(row: Row, status: str, at: datetime, error: Any = None) -> None:
    row["error"] = error
    row["status"] = status
    row["finished_at"] = at
    row["retry_at"] = {}
