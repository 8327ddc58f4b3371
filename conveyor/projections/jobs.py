"""The `jobs` read model: one row per job, the API's list and detail views."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed, Identifier

from conveyor.aggregates import Job
from conveyor.projections import fold
from conveyor.projections.batch import BatchProjection, BatchView, jsonb

log = logging.getLogger(__name__)

Row = dict[str, Any]
COLUMNS = (
    "job_id", "workflow", "status", "platform", "repository", "pull_request", "head_commit",
    "trigger", "plan", "stage_states", "current_stages", "stages", "error", "next_attempt_at",
    "version", "created_at", "started_at", "finished_at", "updated_at", "stage_attempts",
    "retry_at", "attempt", "waiting_for", "retries", "recoveries", "correlation_id",
)
_JSON = frozenset({"trigger", "plan", "stage_states", "stages", "error", "stage_attempts",
                   "retry_at", "waiting_for"})


def load_rows(curs: Cursor[Any], table: Identifier, key: str, ids: list[UUID]) -> dict[UUID, Row]:
    """The current rows of the given jobs, locked for this transaction."""
    if not ids:
        return {}
    curs.execute(
        fold_sql("SELECT * FROM {t} WHERE {k} = ANY(%s) FOR UPDATE", table, key), (ids,),
        prepare=True,
    )
    return {r[key]: dict(r) for r in curs.fetchall()}


def fold_sql(text: str, table: Identifier, key: str) -> Composed:
    """A statement over `table` keyed by column `key`."""
    return SQL(text).format(t=table, k=Identifier(key))


def fold_events(rows: dict[UUID, Row], events: Sequence[Any]) -> set[UUID]:
    """Fold Job events into `rows` in place; return the ids of the rows that changed."""
    changed: set[UUID] = set()
    for event in events:
        if not isinstance(event, fold.JOB_EVENTS):
            continue
        job_id = event.originator_id
        if isinstance(event, Job.Enqueued):
            rows[job_id] = fold.new_row(event)
        elif job_id in rows:
            fold.apply(rows[job_id], event)
        else:
            log.error("event %s v%s for job %s the read model lacks; skipped",
                      type(event).__name__, event.originator_version, job_id)
            continue
        changed.add(job_id)
    return changed


def job_ids(events: Sequence[Any]) -> list[UUID]:
    """The jobs whose current rows a batch needs: all but those it enqueues itself."""
    enqueued = {e.originator_id for e in events if isinstance(e, Job.Enqueued)}
    return list({e.originator_id for e in events if isinstance(e, fold.JOB_EVENTS)} - enqueued)


class JobsView(BatchView):
    """The `jobs` table, updated a batch at a time."""

    tables = ("jobs",)

    def write(self, curs: Cursor[Any], events: Sequence[Any]) -> None:
        table = self.t("jobs")
        rows = load_rows(curs, table, "job_id", job_ids(events))
        changed = fold_events(rows, events)
        if not changed:
            return
        columns = ", ".join(COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
        statement = fold_sql(
            f"INSERT INTO {{t}} ({columns}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
            f" ON CONFLICT ({{k}}) DO UPDATE SET {updates}", table, "job_id",
        )
        curs.executemany(statement, [
            [jsonb(rows[j][c]) if c in _JSON and rows[j][c] is not None else rows[j][c]
             for c in COLUMNS]
            for j in changed
        ])

    def get(self, job_id: UUID) -> Row | None:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=dict_row) as curs:
            curs.execute(fold_sql("SELECT * FROM {t} WHERE {k} = %s", self.t("jobs"), "job_id"),
                         (job_id,))
            return curs.fetchone()


class JobsProjection(BatchProjection[JobsView]):
    """Turns Job events into `jobs` rows; every event, used or not, advances the tracking."""

    name = "jobs"
