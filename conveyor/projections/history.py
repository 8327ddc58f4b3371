"""The `job_history` read model: every event of every job, and one row per stage attempt."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from typing import Any
from uuid import UUID

from psycopg import Cursor

from conveyor.aggregates import Job
from conveyor.changes import Change, final_jobs
from conveyor.projections import rows
from conveyor.projections.batch import BatchProjection, BatchView, Loaded, jsonb

EVENT_COLUMNS = ("job_id", "version", "type", "at", "correlation_id", "data")
# Kept out of the history: the raw delivery is large and only for audit of the event itself.
_HIDDEN = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic",
                     "delivery"})


def event_data(event: Any) -> dict[str, Any]:
    """The event's own fields, as the history shows them."""
    return {k: v for k, v in vars(event).items() if k not in _HIDDEN}


def changed_attempts(changes: Sequence[Change]) -> list[rows.Row]:
    """The `job_stage_attempts` rows the changes started or ended."""
    since: dict[UUID, int] = {}
    for change in changes:
        since.setdefault(change.job.id, change.event.originator_version - 1)
    return [rows.attempt_row(job, attempt) for job in final_jobs(changes).values()
            for attempt in rows.attempts_changed(job, since[job.id])]


class HistoryView(BatchView):
    """The `job_events` and `job_stage_attempts` tables."""

    tables = ("job_events", "job_stage_attempts")

    def write(self, curs: Cursor[Any], changes: Sequence[Change]) -> None:
        if not changes:
            return
        with curs.copy(self.sql(f"COPY {{t}} ({', '.join(EVENT_COLUMNS)}) FROM STDIN",
                                t="job_events")) as copy:
            for c in changes:
                e = c.event
                copy.write_row((e.originator_id, e.originator_version, type(e).__name__,
                                rows.event_time(e), getattr(e, "correlation_id", None),
                                jsonb(event_data(e))))
        attempts = changed_attempts(changes)
        if not attempts:
            return
        columns = rows.ATTEMPT_COLUMNS
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns[2:])
        curs.executemany(
            self.sql(f"INSERT INTO {{t}} ({', '.join(columns)}) VALUES"
                     f" ({', '.join(['%s'] * len(columns))})"
                     f" ON CONFLICT (job_id, started_version) DO UPDATE SET {updates}",
                     t="job_stage_attempts"),
            [[a[c] for c in columns] for a in attempts],
        )


    def rebuilt(self, jobs: Iterable[Job], changes: Sequence[Change]) -> Iterator[Loaded]:
        # `job_events` is the largest table: a rebuild streams it while it reads the log.
        yield Loaded("job_stage_attempts", rows.ATTEMPT_COLUMNS,
                     ([a[c] for c in rows.ATTEMPT_COLUMNS]
                      for job in jobs for a in map(partial(rows.attempt_row, job),
                                                   job.attempt_log)))


class HistoryProjection(BatchProjection[HistoryView]):
    """Keeps every job's execution history; events of other aggregates are only tracked."""

    name = "job_history"
