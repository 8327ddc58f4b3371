"""The wait matcher: pauses and outside events, matched in log order.

Its state (open waits, and outside events kept for the retention window) is written
on the relay's connection inside the relay's batch transaction, together with the
relay's position, so it is exactly what the log up to that position says.
Resuming and timing out go through the Job aggregate: whichever of Resumed,
WaitTimedOut or Cancelled reaches a wait's job first wins, and the others are refused.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from conveyor.aggregates import Job, OutsideEvent, TransitionError
from conveyor.application import Jobs

log = logging.getLogger(__name__)


class Matcher:
    """Keeps the waits table and resumes jobs whose awaited event is in the log."""

    def __init__(self, jobs: Jobs, retention: timedelta) -> None:
        self.jobs = jobs
        self.retention = retention

    def paused(self, conn: psycopg.Connection[Any], event: Job.Paused) -> None:
        job_id = event.originator_id
        conn.execute(
            "INSERT INTO relay_waits (job_id, stage, attempt, event_type, key, deadline,"
            " paused_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (job_id, stage) DO UPDATE SET attempt = excluded.attempt,"
            " event_type = excluded.event_type, key = excluded.key,"
            " deadline = excluded.deadline, paused_at = excluded.paused_at",
            (job_id, event.stage, event.attempt, event.event_type, event.key, event.deadline,
             event.at),
        )
        conn.execute(
            "INSERT INTO relay_timers (job_id, stage, attempt, due_at, kind)"
            " VALUES (%s, %s, %s, %s, 'wait') ON CONFLICT DO NOTHING",
            (job_id, event.stage, event.attempt, event.deadline),
        )
        early = conn.execute(
            "SELECT event_id, payload FROM relay_outside_events"
            " WHERE event_type = %s AND key = %s AND received_at >= %s"
            " ORDER BY received_at LIMIT 1",
            (event.event_type, event.key, event.at - self.retention),
        ).fetchone()
        if early is not None:
            self._resume(conn, job_id, event.stage, event.attempt, early[0], early[1])

    def received(self, conn: psycopg.Connection[Any], event: OutsideEvent.Received) -> None:
        conn.execute(
            "INSERT INTO relay_outside_events (event_id, event_type, key, payload, received_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (event.event_id, event.event_type, event.key, Jsonb(event.payload), event.timestamp),
        )
        waiting = conn.execute(
            "SELECT job_id, stage, attempt FROM relay_waits WHERE event_type = %s AND key = %s",
            (event.event_type, event.key),
        ).fetchall()
        for job_id, stage, attempt in waiting:
            self._resume(conn, job_id, stage, attempt, event.event_id, event.payload)

    def closed(self, conn: psycopg.Connection[Any], job_id: UUID, stage: str | None) -> None:
        """The job's wait at `stage` (or all of them) ended: forget it and its deadline."""
        if stage is None:
            conn.execute("DELETE FROM relay_waits WHERE job_id = %s", (job_id,))
            conn.execute("DELETE FROM relay_timers WHERE job_id = %s AND kind = 'wait'",
                         (job_id,))
        else:
            conn.execute("DELETE FROM relay_waits WHERE job_id = %s AND stage = %s",
                         (job_id, stage))

    def _resume(
        self,
        conn: psycopg.Connection[Any],
        job_id: UUID,
        stage: str,
        attempt: int,
        event_id: str,
        payload: Any,
    ) -> None:
        def resume(job: Job) -> None:
            job.check_wait(stage, attempt)
            job.resume(stage, event_id, payload)

        try:
            self.jobs.update(job_id, resume)
        except TransitionError as refused:
            log.info("wait of job %s at %s not resumed: %s", job_id, stage, refused)
        self.closed(conn, job_id, stage)

    def time_out(self, job_id: UUID, stage: str, attempt: int, at: datetime) -> None:
        """A wait's deadline came: apply its on-timeout policy unless it already ended."""

        def time_out(job: Job) -> None:
            job.check_wait(stage, attempt)
            job.time_out_wait(stage, at=at)

        try:
            self.jobs.update(job_id, time_out)
        except TransitionError as refused:
            log.info("wait of job %s at %s not timed out: %s", job_id, stage, refused)

    @staticmethod
    def forget_expired(conn: psycopg.Connection[Any], before: datetime) -> None:
        conn.execute("DELETE FROM relay_outside_events WHERE received_at < %s", (before,))
