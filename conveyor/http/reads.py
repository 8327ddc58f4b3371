"""The read side's access to projection tables; GET handlers never load aggregates.

The one exception is read-your-writes (`ReadModels.job_or_fresh`): a job the system has
just acknowledged, and the `jobs` projection has not reached yet, is folded from its own
stream, so the `Location` of a 202 answers at once.

On a read standby (`CONVEYOR_READ_DATABASE_URL`), a job or history the standby has not
replayed yet is read from the primary's read models (`primary`), and only then folded.

Every list and count is narrowed to the organisations a token may see (`Visible`, None:
all of them) by one clause, `tenant_clause`; a single job is checked by `ReadModels.visible`,
which the API's `TenantScope` middleware asks for every route of one job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

from conveyor.aggregates.stages import TERMINAL
from conveyor.application import JobNotFoundError, Jobs
from conveyor.projections.metrics import ALL, percentile
from conveyor.projections.rows import job_row
from conveyor.store.dispatches import DispatchStore
from conveyor.store.workers import WorkerStore

_JOB_COLUMNS = (
    "job_id", "workflow", "status", "organization", "team", "platform", "repository",
    "pull_request", "head_commit", "trigger", "current_stages", "stages", "stage_states",
    "stage_attempts", "attempt", "waiting_for", "retries", "recoveries", "error",
    "next_attempt_at", "correlation_id", "version", "created_at", "started_at", "finished_at",
    "updated_at", "outputs", "result", "workflow_version",
)
_LIST_COLUMNS = (
    "job_id, workflow, status, organization, team, platform, repository, pull_request,"
    " head_commit, current_stages, attempt, waiting_for, error, next_attempt_at, version,"
    " created_at, started_at, finished_at, updated_at, workflow_version"
)
Row = dict[str, Any]
# The organisations a request may see; None: every one (docs/architecture.md §9.1).
Visible = frozenset[str] | None


@dataclass(frozen=True)
class JobFilter:
    """What a list of jobs is narrowed to; every field is optional."""

    status: str | None = None
    workflow: str | None = None
    organization: str | None = None
    platform: str | None = None
    repository: str | None = None
    pull_request: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class ReadModels:
    """Queries over the read models, through a small pool opened on first use."""

    def __init__(self, database_url: str, max_size: int = 4, *,
                 primary: ReadModels | None = None) -> None:
        # The primary's read models when these are a standby's; else these are the primary's.
        self.primary: ReadModels = primary or self
        self._pool: ConnectionPool[Any] = ConnectionPool(
            database_url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=5,
            kwargs={"row_factory": dict_row, "autocommit": True},
            configure=_configure,
        )
        self._opened = False

    def connection(self) -> Any:
        """A pooled connection (autocommit, `dict_row` rows); the token and tenant stores
        share the pool, so the API opens no more sessions for them."""
        if not self._opened:
            self._pool.open()
            self._opened = True
        return self._pool.connection()

    def job(self, job_id: UUID) -> Row | None:
        with self.connection() as conn:
            row: Row | None = conn.execute(
                f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE job_id = %s", (job_id,)
            ).fetchone()
        if row is None and self.primary is not self:
            return self.primary.job(job_id)
        return row

    def visible(self, job_id: UUID, organizations: frozenset[str]) -> bool:
        """Whether the `jobs` read model holds the job, of one of `organizations`.

        One indexed read whether the job is another organisation's or not there at all, so
        neither the answer nor its time tells them apart. Not folded from the stream as
        `job_or_fresh` does: read-your-writes serves whoever was just answered with the
        job's id (the webhook's sender), never a token limited to organisations.
        """
        with self.connection() as conn:
            row = conn.execute("SELECT organization = ANY(%s) AS visible FROM jobs"
                               " WHERE job_id = %s", (sorted(organizations), job_id)).fetchone()
        return row is not None and bool(row["visible"])

    def job_or_fresh(self, job_id: UUID, jobs: Jobs) -> Row | None:
        """The job's row, with `view` saying where it came from, or None for an unknown id.

        `"view": "projection"` is the `jobs` read model; `"view": "log"` is the job's own
        stream folded into the same row, for a job the projection has not caught up with.
        """
        row = self.job(job_id)
        if row is not None:
            return row | {"view": "projection"}
        try:
            job = jobs.get(job_id)
        except JobNotFoundError:
            return None
        fresh = job_row(job)
        return {column: fresh[column] for column in _JOB_COLUMNS} | {"view": "log"}

    def with_version_waits(self, rows: list[Row]) -> list[Row]:
        """`rows` whose job's workflow version no running worker advertises, with
        `{"kind": "version", "workflow", "version"}` added to `waiting_for`: read from
        `workflow_workers` now, not projected (docs/architecture.md §3.9)."""
        versioned = [row for row in rows
                     if row["workflow_version"] is not None and row["status"] not in TERMINAL]
        if not versioned:
            return rows
        with self.connection() as conn:
            served = WorkerStore(conn).served()
        return [row | {"waiting_for": [*row["waiting_for"], {
                    "kind": "version", "workflow": row["workflow"],
                    "version": row["workflow_version"]}]}
                if row in versioned and (row["workflow"], row["workflow_version"]) not in served
                else row for row in rows]

    def held_stages(self, job_id: UUID) -> list[str]:
        """The job's ready stages that fair dispatch holds back (docs/architecture.md §3.7)."""
        with self.connection() as conn:
            return DispatchStore.held_stages(conn, job_id)

    def jobs(self, where: JobFilter, after: tuple[datetime, UUID] | None, limit: int,
             order: str, *, visible: Visible) -> list[Row]:
        """One page of the `visible` jobs by creation time, after a keyset position."""
        clauses, params = tenant_clause(visible)
        for column in ("status", "workflow", "organization", "platform", "repository",
                       "pull_request"):
            value = getattr(where, column)
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if where.created_after is not None:
            clauses.append("created_at >= %s")
            params.append(where.created_after)
        if where.created_before is not None:
            clauses.append("created_at < %s")
            params.append(where.created_before)
        direction, compare = ("DESC", "<") if order == "desc" else ("ASC", ">")
        if after is not None:
            clauses.append(f"(created_at, job_id) {compare} (%s, %s)")
            params.extend(after)
        sql = (f"SELECT {_LIST_COLUMNS} FROM jobs"
               f"{' WHERE ' + ' AND '.join(clauses) if clauses else ''}"
               f" ORDER BY created_at {direction}, job_id {direction} LIMIT %s")
        with self.connection() as conn:
            return list(conn.execute(sql, [*params, limit]).fetchall())

    def history(self, job_id: UUID) -> tuple[list[Row], list[Row]]:
        """A job's events in order, and its stage attempts in the order they started."""
        with self.connection() as conn:
            events = conn.execute(
                "SELECT version, type, at, correlation_id, data FROM job_events"
                " WHERE job_id = %s ORDER BY version", (job_id,)).fetchall()
            attempts = conn.execute(
                "SELECT stage, attempt, started_at, finished_at, duration_ms, outcome,"
                " classification, error FROM job_stage_attempts WHERE job_id = %s"
                " ORDER BY started_version", (job_id,)).fetchall()
        if not events and self.primary is not self:
            return self.primary.history(job_id)
        return list(events), list(attempts)

    def metrics(self, workflow: str | None, since: datetime, days_since: datetime, *,
                visible: Visible) -> Row:
        """Counters and percentiles summed from the metrics buckets of `visible` jobs."""
        # Unscoped: the buckets of every job together (ALL), not a sum over organisations.
        clauses, extra = tenant_clause(visible) if visible is not None else (
            ["organization = %s"], [ALL])
        if workflow:
            clauses.append("workflow = %s")
            extra.append(workflow)
        only = "".join(f" AND {clause}" for clause in clauses)
        statements = [
            ("SELECT workflow, status, sum(jobs)::bigint AS jobs FROM metrics_status"
             f" WHERE jobs <> 0{only} GROUP BY workflow, status ORDER BY workflow, status",
             extra),
            (f"SELECT kind, sum(n)::bigint AS n FROM metrics_totals WHERE true{only}"
             " GROUP BY kind", extra),
            (f"SELECT kind, sum(n)::bigint AS n FROM metrics_hourly WHERE hour >= %s{only}"
             " GROUP BY kind", [since, *extra]),
            ("SELECT hour, kind, sum(n)::bigint AS n FROM metrics_hourly WHERE hour >= %s"
             f" AND kind IN ('completed', 'failed'){only} GROUP BY hour, kind ORDER BY hour",
             [since, *extra]),
            ("SELECT date_trunc('day', hour, 'UTC') AS day, kind, sum(n)::bigint AS n"
             " FROM metrics_hourly WHERE hour >= %s AND kind IN ('completed', 'failed')"
             f"{only} GROUP BY day, kind ORDER BY day", [days_since, *extra]),
            ("SELECT measure, bin, sum(n)::bigint AS n FROM metrics_durations"
             f" WHERE hour >= %s{only} GROUP BY measure, bin", [since, *extra]),
        ]
        # A pipeline: the six statements are sent together, in one round trip.
        with self.connection() as conn:
            with conn.pipeline():
                cursors = [conn.execute(sql, params) for sql, params in statements]
            status, totals, window, hourly, daily, bins = (c.fetchall() for c in cursors)
        return {"status": status, "totals": {r["kind"]: r["n"] for r in totals},
                "window": {r["kind"]: r["n"] for r in window},
                "hourly": _series(hourly, "hour"), "daily": _series(daily, "day"),
                "durations": _durations(bins)}

    def tenant_counts(self) -> list[Row]:
        """Every organisation's jobs by status, and its rate-limit deferrals: `organization`,
        `status` (None on a deferrals row), `n`; for `/metrics`."""
        with self.connection() as conn:
            rows: list[Row] = conn.execute(
                "SELECT organization, status, sum(jobs)::bigint AS n FROM metrics_status"
                " WHERE organization <> %s AND jobs <> 0 GROUP BY organization, status"
                " UNION ALL SELECT organization, NULL, sum(n)::bigint FROM metrics_totals"
                " WHERE organization <> %s AND kind = 'deferred' GROUP BY organization",
                (ALL, ALL)).fetchall()
        return rows

    def deferrals(self) -> dict[str, int]:
        """Stages each organisation's rate limits deferred, in all."""
        return {row["organization"]: int(row["n"]) for row in self.tenant_counts()
                if row["status"] is None}

    def ping(self) -> None:
        with self.connection() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        self._pool.close()


def tenant_clause(visible: Visible) -> tuple[list[str], list[Any]]:
    """The clause narrowing a read model's rows to `visible` organisations, and its value.

    The one place lists and counts are narrowed to a token's organisations: the `jobs`
    table and every metrics table have an `organization` column (in the metrics tables,
    also `ALL` for every job's counts together, which no token can be limited to).
    """
    if visible is None:
        return [], []
    if len(visible) == 1:
        # Equality, not ANY: PostgreSQL then reads one organisation's jobs in index order
        # instead of sorting them all for a page.
        return ["organization = %s"], [next(iter(visible))]
    return ["organization = ANY(%s)"], [sorted(visible)]


def _configure(conn: Any) -> None:
    # jsonb columns are parsed by orjson: several times faster than the json module.
    set_json_loads(orjson.loads, conn)


def _series(rows: list[Row], key: str) -> list[Row]:
    points: dict[datetime, Row] = {}
    for r in rows:
        point = points.setdefault(r[key], {key: r[key], "completed": 0, "failed": 0})
        point[r["kind"]] = r["n"]
    return list(points.values())


def _durations(rows: list[Row]) -> dict[str, Row]:
    histograms: dict[str, dict[int, int]] = {}
    for r in rows:
        histograms.setdefault(r["measure"], {})[r["bin"]] = r["n"]
    return {
        measure: {"count": sum(h.values()), "p50": percentile(h, 50),
                  "p95": percentile(h, 95), "p99": percentile(h, 99)}
        for measure, h in sorted(histograms.items())
    }
