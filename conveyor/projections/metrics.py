"""The `metrics` read model: counters and duration histograms in hourly buckets.

Kept incrementally so a request sums a few small buckets instead of scanning jobs.
Every count is kept twice: under `ALL` (organization `''`, every job, what an unscoped
token reads, as few rows as before tenants) and under the job's organisation, so a token
limited to some sums only theirs (docs/architecture.md §8.1, §9.1).
Durations go into log-spaced bins, eight to a doubling of milliseconds, so any
percentile read back is within about 9 percent of the exact value.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor

from conveyor.aggregates import Job, Status
from conveyor.changes import Change, final_jobs
from conveyor.projections import rows
from conveyor.projections.batch import BatchProjection, BatchView, Loaded

BINS_PER_DOUBLING = 8
KINDS: dict[type[Any], str] = {
    Job.Enqueued: "enqueued", Job.Started: "stage_started",
    Job.StageCompleted: "stage_completed", Job.StageFailed: "stage_failed",
    Job.Paused: "paused", Job.Resumed: "resumed", Job.WaitTimedOut: "waits_timed_out",
    Job.Recovered: "recoveries", Job.Retried: "manual_retries", Job.Cancelled: "cancelled",
    Job.Completed: "completed", Job.Failed: "failed", Job.StageDeferred: "deferred",
    Job.StageRedispatched: "redispatches",
}


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


# The buckets of every organisation's jobs together, and of jobs of none: no platform
# names an organisation '' and no token can be limited to it.
ALL = ""


def tenants_of(job: Job) -> tuple[str, ...]:
    """The buckets a job's counts go to: `ALL`, and its organisation if it has one."""
    return (ALL, job.organization) if job.organization else (ALL,)


class Tally:
    """One batch's increments, written as a handful of upserts."""

    def __init__(self) -> None:
        self.status: Counter[tuple[str, str, str]] = Counter()
        self.totals: Counter[tuple[str, str, str]] = Counter()
        self.hourly: Counter[tuple[str, datetime, str, str]] = Counter()
        self.durations: Counter[tuple[str, datetime, str, str, int]] = Counter()

    def count(self, at: datetime, job: Job, kind: str) -> None:
        for tenant in tenants_of(job):
            self.totals[(tenant, job.workflow, kind)] += 1
            self.hourly[(tenant, hour_of(at), job.workflow, kind)] += 1

    def time(self, at: datetime, job: Job, measure: str, ms: float) -> None:
        for tenant in tenants_of(job):
            self.durations[(tenant, hour_of(at), job.workflow, measure,
                            duration_bin(max(ms, 0.0)))] += 1

    def move(self, job: Job, before: str | None, after: str) -> None:
        """The job left status `before` (None: it is new) for `after`."""
        for tenant in tenants_of(job):
            if before is not None:
                self.status[(tenant, job.workflow, before)] -= 1
            self.status[(tenant, job.workflow, after)] += 1


def tally(changes: Sequence[Change]) -> Tally:
    """What a run of changes adds to the metrics, read from the jobs they leave behind."""
    counted = Tally()
    status_before: dict[UUID, Status | None] = {}
    for change in changes:
        status_before.setdefault(change.job.id, change.status_before)
        tally_event(counted, change.event, change.job)
    for job in final_jobs(changes).values():
        before, after = status_before[job.id], job.status
        if before != after:
            counted.move(job, None if before is None else str(before), str(after))
    return counted


def tally_event(counted: Tally, event: Any, job: Job) -> None:
    """Count and time one event of `job` (the job as it is now, perhaps later than the event)."""
    at = rows.event_time(event)
    kind = KINDS.get(type(event))
    if kind is not None:
        counted.count(at, job, kind)
    if isinstance(event, Job.StageFailed) and event.retry_at is not None:
        counted.count(at, job, "retries")
    version = event.originator_version
    if isinstance(event, Job.Started) and job.attempt_log[0].started_version == version:
        counted.time(at, job, "queue_wait", _ms(job.created_on, event.at))
    if isinstance(event, Job.StageCompleted | Job.StageFailed):
        ended = rows.attempt_ended_at(job, version)
        if ended is not None:
            counted.time(at, job, f"stage:{event.stage}", _ms(ended.started_at, at))
    if isinstance(event, Job.Completed | Job.Failed):
        counted.time(at, job, "total", _ms(job.created_on, at))


Counter_ = tuple[str, tuple[str, ...], str, Counter[Any]]


def counters(counted: Tally) -> list[Counter_]:
    """Each metrics table with its key columns, its count column and the tally's counts."""
    return [
        ("metrics_status", ("organization", "workflow", "status"), "jobs", counted.status),
        ("metrics_totals", ("organization", "workflow", "kind"), "n", counted.totals),
        ("metrics_hourly", ("organization", "hour", "workflow", "kind"), "n", counted.hourly),
        ("metrics_durations", ("organization", "hour", "workflow", "measure", "bin"), "n",
         counted.durations),
    ]


class MetricsView(BatchView):
    """The metrics tables: counts by status, event totals, hourly counts and durations."""

    tables = ("metrics_status", "metrics_totals", "metrics_hourly", "metrics_durations")

    def write(self, curs: Cursor[Any], changes: Sequence[Change]) -> None:
        if not changes:
            return
        counted = tally(changes)
        for table, keys, value, counts in counters(counted):
            self._add(curs, table, keys, value, counts.items())
        # A count that drained to zero is removed, so the table is the same whatever
        # batches the events came in.
        curs.execute(self.sql("DELETE FROM {t} WHERE jobs = 0", t="metrics_status"))

    def forget(self, curs: Cursor[Any], changes: Sequence[Change]) -> None:
        """Take out what whole streams of jobs added, as if the log had never held them.

        Each job's counts are its own, so after its archive (docs/architecture.md §8.4)
        the tables are what a rebuild from the remaining log makes: drained counts go.
        """
        if not changes:
            return
        for table, keys, value, counts in counters(tally(changes)):
            self._add(curs, table, keys, value, ((k, -n) for k, n in counts.items()))
            curs.execute(self.sql(f"DELETE FROM {{t}} WHERE {value} = 0", t=table))

    def rebuilt(self, jobs: Iterable[Job], changes: Sequence[Change]) -> Iterator[Loaded]:
        for table, keys, value, counts in counters(tally(changes)):
            yield Loaded(table, (*keys, value), [(*key, n) for key, n in counts.items() if n])

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
