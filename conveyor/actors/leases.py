"""Stage leases: a worker's claim on a stage attempt, with the deadline it must finish by.

A lease is a plain row, not an event: taking one costs no event-store lock, and
the happy path still records a stage's start and outcome in one save (DESIGN 3.4).
Lease writes commit without waiting for the disk flush: a lease lost in a database
crash only means the attempt runs again when its message is redelivered, and a stale
one is checked against the job before anything is recovered.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from uuid import UUID

from conveyor.application import Jobs

WORKER = f"{socket.gethostname()}:{os.getpid()}"


def take_lease(
    jobs: Jobs, job_id: UUID, stage: str, attempt: int, started_at: datetime, deadline: datetime
) -> None:
    with jobs.recorder.datastore.transaction(commit=True) as curs:  # type: ignore[attr-defined]
        curs.execute("SET LOCAL synchronous_commit = off")
        curs.execute(
            "INSERT INTO stage_leases (job_id, stage, attempt, worker, started_at, deadline)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (job_id, stage, attempt) DO UPDATE"
            " SET worker = excluded.worker, started_at = excluded.started_at,"
            " deadline = excluded.deadline",
            (job_id, stage, attempt, WORKER, started_at, deadline),
        )


def release_lease(jobs: Jobs, job_id: UUID, stage: str, attempt: int) -> None:
    with jobs.recorder.datastore.transaction(commit=True) as curs:  # type: ignore[attr-defined]
        curs.execute("SET LOCAL synchronous_commit = off")
        curs.execute(
            "DELETE FROM stage_leases WHERE job_id = %s AND stage = %s AND attempt = %s",
            (job_id, stage, attempt),
        )
