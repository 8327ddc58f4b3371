"""The `job_history` read model: every event of every job, and one row per stage attempt."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor

from conveyor.aggregates import Job
from conveyor.projections import fold
from conveyor.projections.batch import BatchProjection, BatchView, jsonb

Attempt = dict[str, Any]
EVENT_COLUMNS = ("job_id", "version", "type", "at", "correlation_id", "data")
ATTEMPT_COLUMNS = ("job_id", "started_version", "stage", "attempt", "started_at", "finished_at",
                   "duration_ms", "outcome", "classification", "error")
# Kept out of the history: the raw delivery is large and only for audit of the event itself.
_HIDDEN = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic",
                     "delivery"})


def event_data(event: Any) -> dict[str, Any]:
    """The event's own fields, as the history shows them."""
    return {k: v for k, v in vars(event).items() if k not in _HIDDEN}


def _close(attempt: Attempt, outcome: str, at: datetime, **extra: Any) -> None:
    started: datetime = attempt["started_at"]
    attempt.update(outcome=outcome, finished_at=at,
                   duration_ms=(at - started).total_seconds() * 1000, **extra)


def fold_attempts(open_: dict[tuple[UUID, str], Attempt], event: Any) -> list[Attempt]:
    """Apply one event to the open attempts; return the attempts it started or ended."""
    job_id = event.originator_id
    at = fold.event_time(event)
    if isinstance(event, Job.Started):
        attempt = {"job_id": job_id, "started_version": event.originator_version,
                   "stage": event.stage, "attempt": event.attempt, "started_at": event.at,
                   "finished_at": None, "duration_ms": None, "outcome": "running",
                   "classification": None, "error": None}
        open_[(job_id, event.stage)] = attempt
        return [attempt]
    ending: dict[type[Any], str] = {Job.StageCompleted: "completed", Job.Paused: "paused",
                                    Job.Recovered: "recovered"}
    if type(event) in ending or isinstance(event, Job.StageFailed):
        if (job_id, event.stage) not in open_:
            return []
        attempt = open_.pop((job_id, event.stage))
        if isinstance(event, Job.StageFailed):
            outcome = "failed" if event.retry_at is None else "retry_scheduled"
            _close(attempt, outcome, at, classification=event.classification,
                   error=event.error)
        else:
            _close(attempt, ending[type(event)], at)
        return [attempt]
    if isinstance(event, Job.Retried | Job.Cancelled):
        closing = [key for key in open_ if key[0] == job_id]
        ended = [open_.pop(key) for key in closing]
        for attempt in ended:
            _close(attempt, "cancelled" if isinstance(event, Job.Cancelled) else "abandoned", at)
        return ended
    return []


class HistoryView(BatchView):
    """The `job_events` and `job_stage_attempts` tables."""

    tables = ("job_events", "job_stage_attempts")

    def write(self, curs: Cursor[Any], events: Sequence[Any]) -> None:
        ours = [e for e in events if isinstance(e, fold.JOB_EVENTS)]
        if not ours:
            return
        with curs.copy(self.sql(f"COPY {{t}} ({', '.join(EVENT_COLUMNS)}) FROM STDIN",
                                t="job_events")) as copy:
            for e in ours:
                copy.write_row((e.originator_id, e.originator_version, type(e).__name__,
                                fold.event_time(e), getattr(e, "correlation_id", None),
                                jsonb(event_data(e))))
        touched = list({e.originator_id for e in ours if not isinstance(e, Job.Enqueued)})
        open_: dict[tuple[UUID, str], Attempt] = {}
        if touched:
            curs.execute(self.sql("SELECT * FROM {t} WHERE job_id = ANY(%s)"
                                  " AND finished_at IS NULL", t="job_stage_attempts"),
                         (touched,), prepare=True)
            open_ = {(r["job_id"], r["stage"]): dict(r) for r in curs.fetchall()}
        changed: dict[tuple[UUID, int], Attempt] = {}
        for e in ours:
            for attempt in fold_attempts(open_, e):
                changed[(attempt["job_id"], attempt["started_version"])] = attempt
        if not changed:
            return
        updates = ", ".join(f"{c} = excluded.{c}" for c in ATTEMPT_COLUMNS[2:])
        curs.executemany(
            self.sql(f"INSERT INTO {{t}} ({', '.join(ATTEMPT_COLUMNS)}) VALUES"
                     f" ({', '.join(['%s'] * len(ATTEMPT_COLUMNS))})"
                     f" ON CONFLICT (job_id, started_version) DO UPDATE SET {updates}",
                     t="job_stage_attempts"),
            [[a[c] for c in ATTEMPT_COLUMNS] for a in changed.values()],
        )


class HistoryProjection(BatchProjection[HistoryView]):
    """Keeps every job's execution history; events of other aggregates are only tracked."""

    name = "job_history"
