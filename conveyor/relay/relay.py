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
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import dramatiq
import dramatiq.errors
import pika.exceptions
import psycopg
from eventsourcing import persistence

from conveyor.actors.broker import stage_message
from conveyor.aggregates import Job, OutsideEvent, TransitionError
from conveyor.application import Jobs
from conveyor.changes import JobFollower, loader, ready
from conveyor.relay.publisher import LogPublisher, Publisher
from conveyor.relay.waits import Matcher

log = logging.getLogger(__name__)

TRACKING_NAME = "Jobs"
# Any constant works; the relay holding it is the one active relay (DESIGN 3.6).
RELAY_LOCK_KEY = 0x72656C61  # "rela"

# Errors that mean a dependency is away, not that the relay is wrong.
OUTAGES: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    persistence.OperationalError,
    persistence.InterfaceError,
    dramatiq.errors.BrokerConnectionError,
    pika.exceptions.AMQPError,
)

Dispatch = tuple[UUID, str, int]
Timer = tuple[UUID, str, int, datetime]


class Relay:
    """Dispatches ready stages, matches waits and fires due timers; one active at a time."""

    def __init__(
        self,
        jobs: Jobs,
        broker: dramatiq.Broker,
        queue_name: str,
        database_url: str,
        *,
        publisher: Publisher | None = None,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        retention: timedelta = timedelta(hours=24),
        max_recoveries: int = 3,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.jobs = jobs
        self.broker = broker
        self.queue_name = queue_name
        self.database_url = database_url
        self.publisher: Publisher = publisher or LogPublisher()
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.retention = retention
        self.max_recoveries = max_recoveries
        self.clock = clock or jobs.clock
        self.states = JobFollower(loader(jobs.repository), capacity=10_000)
        self.matcher = Matcher(jobs, retention)
        self.stopping = threading.Event()
        self.is_active = threading.Event()
        self.sent = 0

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        """Relay until stopped, riding out outages of PostgreSQL and RabbitMQ.

        Nothing is lost in an outage: the position is recorded only after a batch's
        messages are confirmed, so the interrupted batch is relayed again.
        """
        while not self.stopping.is_set():
            try:
                self._run_once()
            except OUTAGES as error:
                self.is_active.clear()
                log.warning("relay interrupted (%s: %s); retrying", type(error).__name__, error)
                self.stopping.wait(self.poll_seconds)

    def _run_once(self) -> None:
        """Wait to become the active relay, then relay until stopped or disconnected."""
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
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
                    # Recovery runs first, so it also runs as soon as a relay starts.
                    recovered = self.recover_stuck(conn)
                    fired = self.fire_due_timers(conn)
                    relayed = self.relay_batch(conn)
                    if not (recovered or fired or relayed):
                        self.matcher.forget_expired(conn, self.clock() - self.retention)
                        self._wait_for_news(conn)
            finally:
                self.is_active.clear()

    def _wait_for_news(self, conn: psycopg.Connection[Any]) -> None:
        timeout = self.poll_seconds
        row = conn.execute(
            "SELECT least((SELECT min(due_at) FROM relay_timers),"
            " (SELECT min(deadline) FROM stage_leases))"
        ).fetchone()
        if row and row[0] is not None:
            timeout = max(0.0, min(timeout, (row[0] - self.clock()).total_seconds()))
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
        """Relay the next batch of events from the log; return how many were read.

        The matcher's tables, new timers and the new position are written in one
        transaction: a crash anywhere in the batch replays the whole batch.
        """
        start = self.position(conn)
        notifications = self.jobs.recorder.select_notifications(
            start=start, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        with conn.transaction():
            # No need to wait for the flush: a position lost in a database crash only
            # means the batch is relayed again, which delivery at least once allows.
            conn.execute("SET LOCAL synchronous_commit = off")
            for notification in notifications:
                self.handle(conn, self.jobs.mapper.to_domain_event(notification))
            conn.execute(
                "INSERT INTO relay_tracking (application_name, notification_id) VALUES (%s, %s)"
                " ON CONFLICT (application_name)"
                " DO UPDATE SET notification_id = excluded.notification_id",
                (TRACKING_NAME, notifications[-1].id),
            )
        return len(notifications)

    def handle(self, conn: psycopg.Connection[Any], event: Any) -> None:
        """Do what one event of the log asks of the relay."""
        if isinstance(event, OutsideEvent.Received):
            self.matcher.received(conn, event)
            return
        if not isinstance(event, Job.Event):
            return  # other aggregates' events (pull requests) ask nothing of the relay
        dispatches, timers = self.decide(event)
        self.send(dispatches)
        if timers:
            conn.cursor().executemany(
                "INSERT INTO relay_timers (job_id, stage, attempt, due_at, kind)"
                " VALUES (%s, %s, %s, %s, 'dispatch') ON CONFLICT DO NOTHING",
                timers,
            )
        if isinstance(event, Job.Paused):
            if event.request is not None:
                request = event.request
                self.publisher.publish(
                    f"{event.originator_id}:{event.stage}:{event.attempt}:request",
                    request["type"], request["key"], request.get("payload"),
                )
            self.matcher.paused(conn, event)
        elif isinstance(event, Job.Resumed | Job.WaitTimedOut):
            self.matcher.closed(conn, event.originator_id, event.stage)
        elif isinstance(event, Job.Completed | Job.Failed | Job.Cancelled):
            self.matcher.closed(conn, event.originator_id, None)

    def decide(self, event: Any) -> tuple[list[Dispatch], list[Timer]]:
        """What one job event asks of the dispatcher: stages to send now, and retries to time."""
        change = self.states.apply(event)
        if change is None:
            return [], []
        after = change.job
        newly_ready = ready(after) - change.ready_before
        dispatches = [(after.id, stage, attempt) for stage, attempt in sorted(newly_ready)]
        timers: list[Timer] = []
        if isinstance(event, Job.StageFailed) and event.retry_at is not None:
            timers.append((after.id, event.stage, event.attempt + 1, event.retry_at))
        return dispatches, timers

    def send(self, dispatches: Iterable[Dispatch]) -> None:
        for job_id, stage, attempt in dispatches:
            job = self.states.jobs.get(job_id)
            correlation_id = job.correlation_id if job is not None else None
            options = {"correlation_id": correlation_id} if correlation_id else None
            self.broker.enqueue(stage_message(self.queue_name, job_id, stage, attempt, options))
            self.sent += 1

    def recover_stuck(self, conn: psycopg.Connection[Any]) -> int:
        """Dispatch again the stage attempts whose worker's lease ran out with no outcome."""
        now = self.clock()
        expired = conn.execute(
            "SELECT job_id, stage, attempt FROM stage_leases WHERE deadline <= %s"
            " ORDER BY deadline LIMIT %s",
            (now, self.batch_size),
        ).fetchall()
        for job_id, stage, attempt in expired:
            def recover(job: Job, stage: str = stage, attempt: int = attempt) -> None:
                job.recover(stage, attempt, at=now, max_recoveries=self.max_recoveries)

            try:
                self.jobs.update(job_id, recover)
                log.warning("recovered job %s stage %s attempt %d", job_id, stage, attempt)
            except TransitionError:
                pass  # its outcome was recorded after all; the lease is merely stale
            conn.execute(
                "DELETE FROM stage_leases WHERE job_id = %s AND stage = %s AND attempt = %s",
                (job_id, stage, attempt),
            )
        return len(expired)

    def fire_due_timers(self, conn: psycopg.Connection[Any]) -> int:
        """Act on the timers whose time has come; timers live in PostgreSQL, not the broker."""
        now = self.clock()
        with conn.transaction():
            due = conn.execute(
                "SELECT job_id, stage, attempt, kind FROM relay_timers WHERE due_at <= %s"
                " ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, self.batch_size),
            ).fetchall()
            for job_id, stage, attempt, kind in due:
                if kind == "wait":
                    self.matcher.time_out(job_id, stage, attempt, now)
                else:
                    self.send([(job_id, stage, attempt)])
            if due:
                conn.cursor().executemany(
                    "DELETE FROM relay_timers"
                    " WHERE job_id = %s AND stage = %s AND attempt = %s AND kind = %s",
                    due,
                )
        return len(due)
