"""The SQL of retention: which jobs are due, their stored events, and removing them.

The owner of `archived_jobs` and `archive_runs` (migration 0105). Removing a batch of jobs
is one transaction that ends holding the events table's ROW EXCLUSIVE lock, which no append
can share (every append takes EXCLUSIVE, migration 0045): a job's events go only if its
stream is still exactly the one archived, so a job retried after its archive was written
stays, and no event can slip in between the check and the delete.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.sql import SQL, Identifier

from conveyor.aggregates.stages import TERMINAL
from conveyor.projections.batch import BatchView
from conveyor.retention.files import ArchivedJob, StoredRow

# Where a job keeps rows besides its stream: the read models (their views name their
# tables) and the relay's own tables. Finished jobs rarely hold relay rows; any left go.
RELAY_TABLES = ("relay_timers", "relay_waits", "relay_dispatches", "stage_leases")
FOLLOWERS = ("jobs", "job_history", "metrics", "relay")
# Taken for the whole run: two archivers at once would write the same jobs twice.
ARCHIVE_LOCK = 0x636F6E76_61726368 - 2**63


def settled_position(conn: psycopg.Connection[Any]) -> int | None:
    """The log position every follower of the log has passed (None: none ever ran).

    A job whose events all lie at or before it is in every read model as its last event
    left it, and no follower will write a row of it again.
    """
    positions = [conn.execute(SQL(
        "SELECT max(notification_id) FROM {} WHERE application_name <> '__migration__'")
        .format(Identifier(f"{name}_tracking"))).fetchone() for name in FOLLOWERS]
    found = [p[0] for p in positions if p is not None and p[0] is not None]
    return min(found) if found else None


def due_jobs(conn: psycopg.Connection[Any], now: datetime, older_than: timedelta | None,
             default_days: int | None, page: int = 1000) -> Iterator[list[UUID]]:
    """Pages of finished jobs past their retention, by the `jobs` read model, oldest first.

    `older_than` applies to every job; without it each organisation's `retention_days`,
    else `default_days`, does (none: kept forever). A schedule's last run is never due.
    """
    if older_than is not None:
        cutoff = "%(cutoff)s::timestamptz"
    else:
        cutoff = ("%(now)s::timestamptz - make_interval(days => COALESCE("
                  "(SELECT t.retention_days FROM tenant_settings t"
                  " WHERE t.organization = j.organization), %(days)s::integer))")
    params: dict[str, Any] = {
        "cutoff": now - (older_than or timedelta()), "now": now, "days": default_days,
        "statuses": [str(s) for s in TERMINAL], "page": page,
        "after_at": datetime.min.replace(tzinfo=now.tzinfo), "after_id": UUID(int=0)}
    while True:
        rows = conn.execute(
            "SELECT j.job_id, j.finished_at FROM jobs j"
            " WHERE j.finished_at IS NOT NULL AND j.status = ANY(%(statuses)s)"
            f" AND j.finished_at < {cutoff}"
            # A schedule's last run stays: its overlap policy reads that job (§3.8).
            " AND NOT EXISTS (SELECT 1 FROM schedules s WHERE s.last_job_id = j.job_id)"
            " AND (j.finished_at, j.job_id) > (%(after_at)s, %(after_id)s)"
            " ORDER BY j.finished_at, j.job_id LIMIT %(page)s", params).fetchall()
        if not rows:
            return
        yield [r[0] for r in rows]
        params["after_at"], params["after_id"] = rows[-1][1], rows[-1][0]


def streams(conn: psycopg.Connection[Any], job_ids: Sequence[UUID]
            ) -> dict[UUID, list[StoredRow]]:
    """The jobs' stored events exactly as the events table holds them, in version order."""
    found: dict[UUID, list[StoredRow]] = {}
    for row in conn.execute(
            "SELECT originator_id, originator_version, topic, state, notification_id"
            " FROM jobs_events WHERE originator_id = ANY(%s)"
            " ORDER BY originator_id, originator_version", (list(job_ids),)):
        found.setdefault(row[0], []).append(StoredRow(*row))
    return found


def head(conn: psycopg.Connection[Any]) -> int:
    found = conn.execute("SELECT max(notification_id) FROM jobs_events").fetchone()
    return int(found[0]) if found and found[0] is not None else 0


def unapplied_runs(conn: psycopg.Connection[Any], runs: Iterable[str]) -> list[str]:
    """Of these runs, those whose removal has not finished."""
    wanted = list(runs)
    done = {r[0] for r in conn.execute(
        "SELECT run FROM archive_runs WHERE run = ANY(%s)", (wanted,))}
    return [r for r in wanted if r not in done]


def lock_views(conn: psycopg.Connection[Any], views: Iterable[BatchView]) -> None:
    """In the caller's transaction: hold off rebuild swaps, as a view's writer does."""
    for view in views:
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (view.lock_key,))


def remove_rows(conn: psycopg.Connection[Any], jobs: Sequence[ArchivedJob], run: str,
                files: dict[UUID, str], views: Iterable[BatchView]) -> None:
    """Delete the jobs' rows beside their streams, and leave their tombstones."""
    ids = [j.job_id for j in jobs]
    for table in [t for view in views for t in view.tables] + list(RELAY_TABLES):
        conn.execute(SQL("DELETE FROM {} WHERE job_id = ANY(%s)").format(Identifier(table)),
                     (ids,))
    with conn.cursor() as curs:
        curs.executemany(
            "INSERT INTO archived_jobs (job_id, organization, version, finished_at, run, file)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (job_id) DO NOTHING",
            [(j.job_id, j.organization, j.version, j.finished_at, run, files[j.job_id])
             for j in jobs])


def remove_streams(conn: psycopg.Connection[Any], jobs: Sequence[ArchivedJob]) -> int | None:
    """Delete the jobs' events, if each stream still ends at its archived version; the
    events deleted, or None (nothing deleted) when one has moved on.

    Holds the events table's ROW EXCLUSIVE lock to the caller's commit: no append can
    come between the check and the delete, and the caller's transaction is short.
    """
    ids = [j.job_id for j in jobs]
    conn.execute("LOCK TABLE jobs_events IN ROW EXCLUSIVE MODE")
    versions = dict(conn.execute(
        "SELECT originator_id, max(originator_version) FROM jobs_events"
        " WHERE originator_id = ANY(%s) GROUP BY originator_id", (ids,)).fetchall())
    if any(versions.get(j.job_id) != j.version for j in jobs):
        return None
    return conn.execute("DELETE FROM jobs_events WHERE originator_id = ANY(%s)", (ids,)).rowcount


def finish_run(conn: psycopg.Connection[Any], run: str, jobs: int, events: int) -> None:
    conn.execute("INSERT INTO archive_runs (run, jobs, events) VALUES (%s, %s, %s)"
                 " ON CONFLICT (run) DO NOTHING", (run, jobs, events))


def is_archived(conn: psycopg.Connection[Any], job_id: UUID) -> str | None:
    """The file a job was archived to, or None."""
    found = conn.execute("SELECT file FROM archived_jobs WHERE job_id = %s",
                         (job_id,)).fetchone()
    return None if found is None else str(found[0])
