"""`stage_leases`: a worker's claim on a stage attempt, with the deadline it must finish by.

A lease is a plain row, not an event: taking one costs no event-store lock, and
the happy path still records a stage's start and outcome in one save, which also
deletes the lease (`JobsRecorder`), so a recorded outcome never leaves its lease behind.
Lease writes commit without waiting for the disk flush: a lease lost in a database
crash only means the attempt runs again when its message is redelivered, and a stale
one is checked against the job before anything is recovered.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from eventsourcing.postgres import PostgresDatastore

# The holder of the lease the relay leaves on an attempt it re-dispatched (docs §4.3): no
# copy of that attempt may take it over, even redelivered, until it expires.
REDISPATCHED = "relay:re-dispatched"
# The first key of the advisory locks by which a worker process shows it is alive (its
# presence); the second is the hash of its holder name, as `HOLD` and `HOLDER_PRESENT` take it.
PRESENCE_SPACE = 0x636F6E76  # "conv"
HOLDER_PRESENT = (
    "EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    f" AND classid = {PRESENCE_SPACE}::oid"
    " AND objid = (hashtext(stage_leases.worker) & 2147483647)::oid)"
)
HOLD = f"SELECT pg_try_advisory_lock({PRESENCE_SPACE}, hashtext(%s) & 2147483647)"


def this_holder() -> str:
    """This process's name as a lease holder, for a person reading the table: host:pid."""
    return _holder(os.getpid())  # a forked worker process is a holder of its own


@functools.cache
def _holder(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


def hold_presence(conn: psycopg.Connection[Any]) -> bool:
    """Show on this session, for as long as it lasts, that this process is alive: a
    redelivered copy of an attempt never takes over the lease of a holder present."""
    row = conn.execute(HOLD, (this_holder(),)).fetchone()
    return bool(row and row[0])


class Lease(NamedTuple):
    """The stage attempt a lease is on."""

    job_id: UUID
    stage: str
    attempt: int


# One statement each, in autocommit: one round trip. `set_config(..., true)` lasts until
# the statement's own transaction commits, so that commit does not wait for the flush.
UNFLUSHED = "WITH unflushed AS (SELECT set_config('synchronous_commit', 'off', true))"
# A lease is taken only if no live lease is on the attempt: a duplicate message of an
# attempt that is running is a no-op (the relay sends its in-flight attempts again when it
# starts: docs/architecture.md §3.7). A message RabbitMQ redelivers takes the lease over
# when the process holding it is gone (its presence's session ended: killed, or its host
# lost), but never from one still present (a broker restart redelivers what a live worker
# is running), nor from the relay holding it for a re-dispatch.
# And only if the job has not moved past the version the taker read it at (`seen`): a copy
# read just before another copy's outcome was saved, which released the lease, must not
# run the attempt again.
TAKE = (
    f"{UNFLUSHED} INSERT INTO stage_leases (job_id, stage, attempt, worker, started_at, deadline)"
    " SELECT %(job_id)s, %(stage)s, %(attempt)s, %(worker)s, %(started_at)s, %(deadline)s"
    " FROM unflushed WHERE %(seen)s::integer IS NULL OR NOT EXISTS (SELECT FROM jobs_events"
    " WHERE originator_id = %(job_id)s AND originator_version > %(seen)s::integer)"
    " ON CONFLICT (job_id, stage, attempt) DO UPDATE SET worker = excluded.worker,"
    " started_at = excluded.started_at, deadline = excluded.deadline"
    " WHERE stage_leases.deadline <= excluded.started_at"
    " OR (%(takeover)s AND stage_leases.worker <> %(redispatched)s"
    f" AND NOT {HOLDER_PRESENT}) RETURNING 1"
)
RELEASE = (f"{UNFLUSHED} SELECT conveyor_release_leases(%s::uuid[], %s::text[], %s::integer[])"
           " FROM unflushed")


def lease_columns(leases: Sequence[Lease]) -> tuple[list[UUID], list[str], list[int]]:
    """The leases as the columns `conveyor_release_leases` (migration 0045) takes."""
    return ([lease.job_id for lease in leases], [lease.stage for lease in leases],
            [lease.attempt for lease in leases])


class LeaseStore:
    """Takes, releases and finds expired stage leases; each call commits on its own."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def take(self, lease: Lease, started_at: datetime, deadline: datetime, *,
             takeover: bool = False, holder: str | None = None, seen: int | None = None,
             ) -> bool:
        """Claim the attempt until `deadline`; False if another worker holds it, or if the
        job has events past version `seen` (the one its taker decided on).

        `takeover` claims it even from a live lease (a redelivered message) whose holder
        is gone, but not from one present, nor from the relay's lease on an attempt it
        re-dispatched (`holder` REDISPATCHED). The holder is this process by default.
        """
        with self.datastore.get_connection() as conn:
            taken = conn.execute(TAKE, {
                "job_id": lease.job_id, "stage": lease.stage, "attempt": lease.attempt,
                "worker": holder or this_holder(), "started_at": started_at,
                "deadline": deadline,
                "takeover": takeover, "redispatched": REDISPATCHED, "seen": seen},
                prepare=True).fetchone()
        return taken is not None

    def release(self, lease: Lease) -> None:
        """Drop the claim: the attempt's outcome is refused, or its recovery is recorded.

        An outcome's save releases its lease itself, in the same statement (`JobsRecorder`).
        """
        with self.datastore.get_connection() as conn:
            conn.execute(RELEASE, lease_columns([lease]), prepare=True)

    def live(self, job_id: UUID, now: datetime) -> list[Lease]:
        """The job's leases whose deadline is still ahead: its stages running now."""
        with self.datastore.transaction(commit=False) as curs:
            rows = curs.execute(
                "SELECT job_id, stage, attempt FROM stage_leases WHERE job_id = %s"
                " AND deadline > %s ORDER BY stage", (job_id, now)).fetchall()
        return [Lease(row["job_id"], row["stage"], row["attempt"]) for row in rows]

    def expired(self, now: datetime, limit: int) -> list[Lease]:
        """The leases whose deadline has passed, the oldest first."""
        with self.datastore.transaction(commit=False) as curs:
            rows = curs.execute(
                "SELECT job_id, stage, attempt FROM stage_leases WHERE deadline <= %s"
                " ORDER BY deadline LIMIT %s",
                (now, limit),
            ).fetchall()
        return [Lease(row["job_id"], row["stage"], row["attempt"]) for row in rows]

