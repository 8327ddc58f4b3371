"""The `metrics` read model: counters and duration histograms in hourly buckets.

Kept incrementally so a request sums a few small buckets instead of scanning jobs.
Durations go into log-spaced bins, eight to a doubling of milliseconds, so any
percentile read back is within about 9 percent of the exact value.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor

from conveyor.aggregates import Job
from conveyor.projections import fold
from conveyor.projections.batch import BatchProjection, BatchView, jsonb

BINS_PER_DOUBLING = 8
KINDS: dict[type[Any], str] = {
    Job.Enqueued: "enqueued", Job.Started: "stage_started",
    Job.StageCompleted: "stage_completed", Job.StageFailed: "stage_failed",
    Job.Paused: "paused", Job.Resumed: "resumed", Job.WaitTimedOut: "waits_timed_out",
    Job.Recovered: "recoveries", Job.Retried: "manual_retries", Job.Cancelled: "cancelled",
    Job.Completed: "completed", Job.Failed: "failed",
}
_TIMES = ("created_at", "started_at", "finished_at", "updated_at", "next_attempt_at")


def duration_bin(ms: float) -> int:
    """The histogram bin of a duration in milliseconds."""
    return 0 if ms < 1 else 1 + int(math.log2(ms) * BINS_PER_DOUBLING)


def bin_upper_ms(bin_: int) -> float:
    """The largest duration a bin holds, reported as its percentile value."""
    return 1.0 if bin_ == 0 else 2 ** (bin_ / BINS_PER_DOUBLING)


def percentile(histogram: dict[int, int], p: float) -> float | None:
    """The p-th percentile (0-100) of a histogram of bins, in milliseconds."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for bin_ in sorted(histogram):
        seen += histogram[bin_]
        if seen >= rank:
            return round(bin_upper_ms(bin_), 3)
    return None  # pragma: no cover


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _ms(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() * 1000


def _load_state(raw: Any) -> fold.Row:
    row: fold.Row = dict(raw)
    row["job_id"] = UUID(row["job_id"])
    for name in _TIMES:
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name])
    return row


class Tally:
    """One batch's increments, written as a handful of upserts."""

    def __init__(self) -> None:
        self.status: Counter[tuple[str, str]] = Counter()
        self.totals: Counter[tuple[str, str]] = Counter()
        self.hourly: Counter[tuple[datetime, str, str]] = Counter()
        self.durations: Counter[tuple[datetime, str, str, int]] = Counter()

    def count(self, at: datetime, workflow: str, kind: str) -> None:
        self.totals[(workflow, kind)] += 1
        self.hourly[(hour_of(at), workflow, kind)] += 1

    def time(self, at: datetime, workflow: str, measure: str, ms: float) -> None:
        self.durations[(hour_of(at), workflow, measure, duration_bin(max(ms, 0.0)))] += 1


Before = tuple[str | None, datetime | None, dict[str, Any] | None]
ENQUEUED: Before = (None, None, None)


def before(row: fold.Row, event: Any) -> Before:
    """What the tally compares against: the job's status, start and open attempt before `event`."""
    stage = getattr(event, "stage", None)
    entry = fold.open_entry(row, stage) if stage is not None else None
    return row["status"], row["started_at"], dict(entry) if entry else None


def tally_event(rows: dict[UUID, fold.Row], event: Any, tally: Tally) -> bool:
    """Fold one event into the job states and the tally; False if its job is unknown."""
    if isinstance(event, Job.Enqueued):
        row = rows[event.originator_id] = fold.new_row(event)
        row["trigger"] = {}
        tally_change(tally, event, row, ENQUEUED)
        return True
    found = rows.get(event.originator_id)
    if found is None:
        return False
    was = before(found, event)
    fold.apply(found, event)
    tally_change(tally, event, found, was)
    return True


def tally_change(tally: Tally, event: Any, row: fold.Row, was: Before) -> None:
    """Count and time what `event` did to a job, given its state before and `row` after."""
    before_status, before_started, entry = was
    workflow = row["workflow"]
    if before_status != row["status"]:
        if before_status is not None:
            tally.status[(workflow, before_status)] -= 1
        tally.status[(workflow, row["status"])] += 1
    tally_counts(tally, event, row, before_started, entry)


def tally_counts(tally: Tally, event: Any, row: fold.Row, before_started: datetime | None,
                 entry: dict[str, Any] | None) -> None:
    """Count and time `event`: everything but the status counts, which need derived rows."""
    at = fold.event_time(event)
    workflow = row["workflow"]
    kind = KINDS.get(type(event))
    if kind is not None:
        tally.count(at, workflow, kind)
    if isinstance(event, Job.StageFailed) and event.retry_at is not None:
        tally.count(at, workflow, "retries")
    if isinstance(event, Job.Started) and before_started is None:
        tally.time(at, workflow, "queue_wait", _ms(row["created_at"], event.at))
    if isinstance(event, Job.StageCompleted | Job.StageFailed) and entry is not None:
        started = datetime.fromisoformat(entry["started_at"])
        tally.time(at, workflow, f"stage:{event.stage}", _ms(started, at))
    if isinstance(event, Job.Completed | Job.Failed):
        tally.time(at, workflow, "total", _ms(row["created_at"], at))


class MetricsView(BatchView):
    """The metrics tables and the compact per-job state they are derived with."""

    tables = ("metrics_jobs", "metrics_status", "metrics_totals", "metrics_hourly",
              "metrics_durations")

    def write(self, curs: Cursor[Any], events: Sequence[Any]) -> None:
        ours = [e for e in events if isinstance(e, fold.JOB_EVENTS)]
        touched = list({e.originator_id for e in ours if not isinstance(e, Job.Enqueued)})
        rows: dict[UUID, fold.Row] = {}
        if touched:
            curs.execute(self.sql("SELECT job_id, state FROM {t} WHERE job_id = ANY(%s)"
                                  " FOR UPDATE", t="metrics_jobs"), (touched,), prepare=True)
            rows = {r["job_id"]: _load_state(r["state"]) for r in curs.fetchall()}
        tally = Tally()
        changed = {e.originator_id for e in ours if tally_event(rows, e, tally)}
        if not changed:
            return
        curs.executemany(
            self.sql("INSERT INTO {t} (job_id, state) VALUES (%s, %s) ON CONFLICT (job_id)"
                     " DO UPDATE SET state = excluded.state", t="metrics_jobs"),
            [(j, jsonb(rows[j])) for j in changed],
        )
        self._add(curs, "metrics_status", ("workflow", "status"), "jobs", tally.status.items())
        # A count that drained to zero is removed, so the table is the same whatever
        # batches the events came in.
        curs.execute(self.sql("DELETE FROM {t} WHERE jobs = 0", t="metrics_status"))
        self._add(curs, "metrics_totals", ("workflow", "kind"), "n", tally.totals.items())
        self._add(curs, "metrics_hourly", ("hour", "workflow", "kind"), "n",
                  tally.hourly.items())
        self._add(curs, "metrics_durations", ("hour", "workflow", "measure", "bin"), "n",
                  tally.durations.items())

    def _add(self, curs: Cursor[Any], table: str, keys: tuple[str, ...], value: str,
             items: Iterable[tuple[tuple[Any, ...], int]]) -> None:
        params = [(*key, n) for key, n in items if n]
        if not params:
            return
        columns = ", ".join((*keys, value))
        curs.executemany(
            self.sql(f"INSERT INTO {{t}} AS m ({columns}) VALUES"
                     f" ({', '.join(['%s'] * (len(keys) + 1))}) ON CONFLICT ({', '.join(keys)})"
                     f" DO UPDATE SET {value} = m.{value} + excluded.{value}", t=table),
            params,
        )


class MetricsProjection(BatchProjection[MetricsView]):
    """Counts and times what happens to jobs; events of other aggregates are only tracked."""

    name = "metrics"
