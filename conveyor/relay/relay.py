"""The relay: follows the event log and turns what it says into `run_stage` messages.

It is the only part that sends to the broker (DESIGN 3.1). It reads the notification
log in order from its tracked position, sends a message for every stage an event makes
ready, stores retry due times as durable timers, and records its new position after the
messages are confirmed. A crash between sending and recording sends again: delivery is
at least once, and `run_stage` is idempotent.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import dramatiq
import psycopg

from conveyor.actors.broker import stage_message
from conveyor.aggregates import Job
from conveyor.application import Jobs

log = logging.getLogger(__name__)

TRACKING_NAME = "Jobs"
# Any constant works; the relay holding it is the one active relay (DESIGN 3.6).
RELAY_LOCK_KEY = 0x72656C61  # "rela"

Dispatch = tuple[UUID, str, int]
Timer = tuple[UUID, str, int, datetime]


class JobStates:
    """Jobs as the log has described them so far, so most events need no database read."""

    def __init__(self, jobs: Jobs, capacity: int = 10_000) -> None:
        self.jobs = jobs
        self.capacity = capacity
        self._cache: OrderedDict[UUID, Job] = OrderedDict()

    def apply(self, event: Any) -> tuple[set[tuple[str, int]], Job]:
        """Apply `event`; return the stage attempts that were ready before, and the job after."""
        job_id: UUID = event.originator_id
        version: int = event.originator_version
        before = self._cache.pop(job_id, None)
        if before is not None and before.version != version - 1:
            before = None
        if before is None and version > 1:
            before = self.jobs.repository.get(job_id, version=version - 1)
        # mutate() changes the job in place: take what we need of "before" first.
        ready_before = ready(before)
        after: Job = event.mutate(before)
        if not after.status.is_terminal:
            self._cache[job_id] = after
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return ready_before, after


def ready(job: Job | None) -> set[tuple[str, int]]:
    if job is None:
        return set()
    return {(stage, job.attempts[stage]) for stage in job.ready_stages()}


class Relay:
    """Dispatches ready stages and fires due timers; one active instance at a time."""

    def __init__(
        self,
        jobs: Jobs,
        broker: dramatiq.Broker,
        queue_name: str,
        database_url: str,
        *,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.jobs = jobs
        self.broker = broker
        self.queue_name = queue_name
        self.database_url = database_url
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.clock = clock or jobs.clock
        self.states = JobStates(jobs)
        self.stopping = threading.Event()
        self.is_active = threading.Event()
        self.sent = 0

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        """Wait to become the active relay, then relay until stopped."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.stopping.is_set():
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK_KEY,)).fetchone()
                if row and row[0]:
                    break
                self.stopping.wait(self.poll_seconds)
            else:
                return
            log.info("relay active")
            self.is_active.set()
            conn.execute("LISTEN jobs_events")
            try:
                while not self.stopping.is_set():
                    fired = self.fire_due_timers(conn)
                    relayed = self.relay_batch(conn)
                    if not fired and not relayed:
                        self._wait_for_news(conn)
            finally:
                self.is_active.clear()

    def _wait_for_news(self, conn: psycopg.Connection[Any]) -> None:
        timeout = self.poll_seconds
        row = conn.execute(
            "SELECT EXTRACT(EPOCH FROM min(due_at) - now()) FROM relay_timers"
        ).fetchone()
        if row and row[0] is not None:
            timeout = max(0.0, min(timeout, float(row[0])))
        # Wakes on the NOTIFY every append sends; the timeout is the polling fallback.
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            pass

    def position(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT notification_id FROM relay_tracking WHERE application_name = %s",
            (TRACKING_NAME,),
        ).fetchone()
        return int(row[0]) if row else 0

    def relay_batch(self, conn: psycopg.Connection[Any]) -> int:
        """Relay the next batch of events from the log; return how many were read."""
        start = self.position(conn)
        notifications = self.jobs.recorder.select_notifications(
            start=start, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        timers: list[Timer] = []
        for notification in notifications:
            event = self.jobs.mapper.to_domain_event(notification)
            dispatches, new_timers = self.decide(event)
            self.send(dispatches)
            timers.extend(new_timers)
        with conn.transaction():
            if timers:
                conn.cursor().executemany(
                    "INSERT INTO relay_timers (job_id, stage, attempt, due_at)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    timers,
                )
            conn.execute(
                "INSERT INTO relay_tracking (application_name, notification_id) VALUES (%s, %s)"
                " ON CONFLICT (application_name)"
                " DO UPDATE SET notification_id = excluded.notification_id",
                (TRACKING_NAME, notifications[-1].id),
            )
        return len(notifications)

    def decide(self, event: Any) -> tuple[list[Dispatch], list[Timer]]:
        """What one event asks of the relay: stages to dispatch now, and timers to set."""
        ready_before, after = self.states.apply(event)
        newly_ready = ready(after) - ready_before
        dispatches = [(after.id, stage, attempt) for stage, attempt in sorted(newly_ready)]
        timers: list[Timer] = []
        if isinstance(event, Job.StageFailed) and event.retry_at is not None:
            timers.append((after.id, event.stage, event.attempt + 1, event.retry_at))
        return dispatches, timers

    def send(self, dispatches: Iterable[Dispatch]) -> None:
        for job_id, stage, attempt in dispatches:
            self.broker.enqueue(stage_message(self.queue_name, job_id, stage, attempt))
            self.sent += 1

    def fire_due_timers(self, conn: psycopg.Connection[Any]) -> int:
        """Send the stage attempts whose retry time has come; timers live in PostgreSQL."""
        with conn.transaction():
            due = conn.execute(
                "SELECT job_id, stage, attempt FROM relay_timers WHERE due_at <= %s"
                " ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (self.clock(), self.batch_size),
            ).fetchall()
            self.send((UUID(str(j)), s, a) for j, s, a in due)
            if due:
                conn.cursor().executemany(
                    "DELETE FROM relay_timers WHERE job_id = %s AND stage = %s AND attempt = %s",
                    due,
                )
        return len(due)
