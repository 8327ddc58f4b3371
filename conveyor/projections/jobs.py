"""The `jobs` read model: one row per job, the API's list and detail views."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from psycopg import Cursor

from conveyor.aggregates import Job, Status
from conveyor.changes import Change, final_jobs
from conveyor.projections.batch import BatchProjection, BatchView, Loaded, jsonb
from conveyor.projections.rows import JOB_COLUMNS, JOB_JSON, job_row

# A job a waiting request answers for: finished, or paused for an outside event.
SETTLED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED,
                     Status.WAITING_FOR_EVENT})
SETTLED_CHANNEL = "jobs_settled"


def row_values(row: dict[str, Any]) -> list[Any]:
    """A `jobs` row's values in column order, its JSON columns wrapped for jsonb."""
    return [jsonb(row[c]) if c in JOB_JSON and row[c] is not None else row[c]
            for c in JOB_COLUMNS]


class JobsView(BatchView):
    """The `jobs` table: each changed job's row, rewritten from the job's state."""

    tables = ("jobs",)

    def write(self, curs: Cursor[Any], changes: Sequence[Change]) -> None:
        jobs = final_jobs(changes)
        if not jobs:
            return
        columns = ", ".join(JOB_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in JOB_COLUMNS[1:])
        curs.executemany(
            self.sql(f"INSERT INTO {{t}} ({columns})"
                     f" VALUES ({', '.join(['%s'] * len(JOB_COLUMNS))})"
                     f" ON CONFLICT (job_id) DO UPDATE SET {updates}", t="jobs"),
            [row_values(job_row(job)) for job in jobs.values()],
        )
        if any(job.status in SETTLED for job in jobs.values()):
            # Delivered at commit: wakes the API's waiting requests (conveyor/http/waiting.py).
            curs.execute(f"NOTIFY {SETTLED_CHANNEL}")


    def rebuilt(self, jobs: Iterable[Job], changes: Sequence[Change]) -> Iterator[Loaded]:
        yield Loaded("jobs", JOB_COLUMNS,
                     ([row[c] for c in JOB_COLUMNS] for row in map(job_row, jobs)), JOB_JSON)


class JobsProjection(BatchProjection[JobsView]):
    """Keeps a row per job; every event, used or not, advances the tracking."""

    name = "jobs"
