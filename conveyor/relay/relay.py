"""The relay: follows the event log and turns what it says into `run_stage` messages.

It is the only part that sends to the broker (docs/architecture.md §3.1). It reads the notification
log in order from its tracked position, holds every stage an event makes ready and sends
it in its organisation's turn (`relay.admission`, docs/architecture.md §3.7), stores retry
due times as durable timers, and records its new position with what it sent. A batch's
messages are gathered and sent together once it is recorded, their confirms awaited once
(`relay.dispatch`). A relay that stops before they are confirmed leaves them in flight, and
the next one sends them again: delivery is at least once, and `run_stage` is idempotent.

The relay is the loop; each table it keeps has its owner in `conveyor.store`, and its
position is kept by eventsourcing's `PostgresTrackingRecorder` (`store.tracking`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

import dramatiq
import dramatiq.errors
import pika.exceptions
import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import Tracking
from psycopg import Cursor
from psycopg.rows import DictRow, dict_row

from conveyor.actors.broker import stage_message, version_queue
from conveyor.aggregates import Job, OutsideEvent, TransitionError
from conveyor.application import JobNotFoundError, Jobs
from conveyor.changes import Change, JobFollower, loader, ready
from conveyor.relay.admission import Admission
from conveyor.relay.dispatch import BrokerSender, SendError, StageSender
from conveyor.relay.fair import Limits
from conveyor.relay.publisher import LogPublisher, Publisher
from conveyor.relay.spans import Ended, span_of
from conveyor.relay.waits import Matcher
from conveyor.scheduler import Scheduler
from conveyor.store import datastore_of
from conveyor.store.leases import REDISPATCHED, Lease, LeaseStore
from conveyor.store.timers import Timer, TimerKind, TimerStore
from conveyor.store.tracking import relay_tracking
from conveyor.store.workers import WorkerStore, is_served
from conveyor.tenancy import DEFAULT_PRIORITY

log = logging.getLogger(__name__)

TRACKING_NAME = "Jobs"
# Any constant works; the relay holding it is the one active relay (docs/architecture.md §3.4).
RELAY_LOCK_KEY = 0x72656C61  # "rela"

# Errors that mean a dependency is away, not that the relay is wrong.
OUTAGES: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    # The server ended a batch's transaction left idle while this process was frozen.
    psycopg.errors.IdleInTransactionSessionTimeout,
    persistence.OperationalError,
    persistence.InterfaceError,
    dramatiq.errors.BrokerConnectionError,
    pika.exceptions.AMQPError,
    SendError,
)

Dispatch = tuple[UUID, str, int]

__all__ = ["OUTAGES", "Relay"]


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
        sender: StageSender | None = None,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        retention: timedelta = timedelta(hours=24),
        max_recoveries: int = 3,
        redispatch_after: timedelta = timedelta(minutes=5),
        max_redispatches: int = 3,
        clock: Callable[[], datetime] | None = None,
        admission: Admission | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.jobs = jobs
        self.broker = broker
        self.queue_name = queue_name
        self.database_url = database_url
        self.publisher: Publisher = publisher or LogPublisher()
        # Without a sender of its own, the relay sends through Dramatiq's `enqueue`.
        self.sender: StageSender = sender or BrokerSender(broker)
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.retention = retention
        self.max_recoveries = max_recoveries
        self.redispatch_after = redispatch_after
        self.max_redispatches = max_redispatches
        self.clock = clock or jobs.clock
        self.states = JobFollower(loader(jobs.repository), capacity=10_000)
        self.timers = TimerStore()
        self.matcher = Matcher(jobs, retention, self.timers)
        self.leases = LeaseStore(datastore_of(jobs))
        self.tracking = relay_tracking(datastore_of(jobs))
        # Every ready attempt is held, then sent in turn within the tenants' limits.
        self.admission = admission or Admission(
            lambda org: Limits(None, DEFAULT_PRIORITY), None, self.clock)
        # Fires the schedules' due ticks among the chores (docs/architecture.md §3.8).
        self.scheduler = scheduler
        self.stopping = threading.Event()
        self.is_active = threading.Event()
        self.sent = 0
        # The position this relay last recorded, known while it is the one active relay.
        self._position: int | None = None
        # The messages of the batch being relayed, sent together before its position moves.
        self._outbox: list[dramatiq.Message[Any]] = []
        # The spans the batch's events ended, exported once its position is recorded.
        self._spans: list[Ended] = []
        # When the chores (recovery, due timers, expired waits) are next due; None: now.
        self._chores_due: datetime | None = None

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        """Close the relay's connections to RabbitMQ, once it has stopped."""
        self.sender.close()
        self.publisher.close()

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
                # After a failover or a restart every idle session of the pool is as dead
                # as the one that failed: dropped now, not one interrupted round each.
                datastore_of(self.jobs).pool.check()
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
            self._position = None  # another relay may have moved it meanwhile
            self.admission.forget()  # and its dispatches: rebuilt from the table
            self._chores_due = None  # and recovery runs as soon as a relay starts
            if self.scheduler is not None:
                self.scheduler.declare()  # the code's schedules, as this relay's code has them
            self.is_active.set()
            conn.execute("LISTEN jobs_events")
            try:
                while not self.stopping.is_set():
                    chores = self._chores(conn)
                    relayed = self.relay_batch(conn)
                    self._timers_set_due(self.timers.set_due())
                    if not (chores or relayed):
                        self._wait_for_news(conn)
            finally:
                self.is_active.clear()

    def _chores(self, conn: psycopg.Connection[Any]) -> int:
        """Recover stuck stages, re-dispatch lost ones, fire due timers and schedules' ticks,
        when due; return how many acted.

        Due once a poll, and when a timer this relay set falls due: a burst of events
        costs no query for them. A stuck stage is recovered within a poll of its lease's
        deadline (leases are minutes long; their workers, not the relay, write them).
        """
        now = self.clock()
        if self._chores_due is not None and now < self._chores_due:
            return 0
        acted = (self.recover_stuck() + self.redispatch_lost(conn) + self.fire_due_timers(conn)
                 + self.release_held(conn)
                 + (0 if self.scheduler is None else self.scheduler.fire_due()))
        if acted:
            return acted  # and due again at once: there may be more
        with conn.cursor(row_factory=dict_row) as curs:
            self.matcher.forget_expired(curs, now - self.retention)
            timer_due = self.timers.next_due(curs)
        self._chores_due = now + timedelta(seconds=self.poll_seconds)
        self._timers_set_due(timer_due)
        return 0

    def _timers_set_due(self, due: datetime | None) -> None:
        if due is not None and (self._chores_due is None or due < self._chores_due):
            self._chores_due = due

    def _wait_for_news(self, conn: psycopg.Connection[Any]) -> None:
        timeout = self.poll_seconds
        if self._chores_due is not None:
            timeout = max(0.0, min(timeout, (self._chores_due - self.clock()).total_seconds()))
        # Wakes on the NOTIFY every append sends; the timeout is the polling fallback.
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            pass

    def position(self) -> int:
        """The id of the last notification relayed, 0 before the first.

        Read once, then kept: only the active relay moves it, so a read per round
        would only add a transaction per round.
        """
        if self._position is None:
            self._position = self.tracking.max_tracking_id(TRACKING_NAME) or 0
        return self._position

    def relay_batch(self, conn: psycopg.Connection[Any]) -> int:
        """Relay the next batch of events from the log; return how many were read.

        The matcher's tables, new timers and the new position are written in one
        transaction: a crash anywhere in the batch replays the whole batch.
        """
        notifications = self.jobs.recorder.select_notifications(
            start=self.position(), limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        self._position = None  # known again once the batch is recorded
        with self._batch():
            with conn.transaction(), conn.cursor(row_factory=dict_row) as curs:
                # No need to wait for the flush: a position lost in a database crash only
                # means the batch is relayed again, which delivery at least once allows.
                curs.execute("SET LOCAL synchronous_commit = off")
                for notification in notifications:
                    self.handle(self.jobs.mapper.to_domain_event(notification), curs)
                self._release(curs)
                self.tracking._insert_tracking(curs,
                                               Tracking(TRACKING_NAME, notifications[-1].id))
            # Stage messages go once what they dispatch is recorded (docs/architecture.md
            # §3.7); a relay stopped before they are confirmed sends its in-flight again.
            self._send_outbox()
            spans, self._spans = self._spans, []
        self._position = notifications[-1].id
        for span in spans:
            span.export()
        return len(notifications)

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Gather the messages and spans of the block's events; a failed block leaves none
        behind."""
        self._outbox.clear()
        self._spans.clear()
        try:
            yield
        except BaseException:
            self.admission.forget()  # rebuilt from the table, as the rollback left it
            raise
        finally:
            self._outbox.clear()
            self._spans.clear()

    def _send_outbox(self) -> None:
        """Send the gathered messages; return once every one is confirmed."""
        self.sender.send(self._outbox)
        self.sent += len(self._outbox)
        self._outbox.clear()

    @singledispatchmethod
    def handle(self, event: object, curs: Cursor[DictRow]) -> None:
        """Do what one event of the log asks of the relay: by default, nothing.

        Pull requests' events, for one, ask nothing of the relay.
        """

    @handle.register
    def _received(self, event: OutsideEvent.Received, curs: Cursor[DictRow]) -> None:
        self.matcher.received(curs, event)

    @handle.register
    def _job_event(self, event: Job.Event, curs: Cursor[DictRow]) -> None:
        """Hold the stages the event made ready; time the retry it scheduled, if any."""
        change = self.states.apply(event)
        dispatches, timers = self._decided(change)
        self.admission.observe(curs, event)
        self._hold(curs, dispatches)
        self.timers.set(curs, timers)
        span = None if change is None else span_of(change.job, event)
        if span is not None:
            self._spans.append(span)

    @handle.register
    def _paused(self, event: Job.Paused, curs: Cursor[DictRow]) -> None:
        """Publish the pause's request, if it has one, then open its wait."""
        self._job_event(event, curs)
        if event.request is not None:
            self.publisher.publish(
                f"{event.originator_id}:{event.stage}:{event.attempt}:request",
                event.request["type"], event.request["key"], event.request.get("payload"),
            )
        job = self.states.jobs.get(event.originator_id)
        self.matcher.paused(curs, event, None if job is None else job.organization)

    @handle.register(Job.Resumed)
    @handle.register(Job.WaitTimedOut)
    def _wait_ended(self, event: Job.Resumed | Job.WaitTimedOut, curs: Cursor[DictRow]) -> None:
        self._job_event(event, curs)
        self.matcher.closed(curs, event.originator_id, event.stage)

    @handle.register
    def _migrated(self, event: Job.Migrated, curs: Cursor[DictRow]) -> None:
        """Send the job's ready stages to its new version's queue; its waits follow the
        renames, so an outside event still resumes a renamed stage (§3.9)."""
        self._job_event(event, curs)
        self.matcher.renamed(curs, event.originator_id, event.renamed)

    @handle.register(Job.Completed)
    @handle.register(Job.Failed)
    @handle.register(Job.Cancelled)
    def _job_ended(
        self, event: Job.Completed | Job.Failed | Job.Cancelled, curs: Cursor[DictRow]
    ) -> None:
        self._job_event(event, curs)
        self.matcher.closed(curs, event.originator_id, None)

    def decide(self, event: Any) -> tuple[list[Dispatch], list[Timer]]:
        """What one job event asks of the dispatcher: stages to send now, and retries and
        deferrals to time."""
        return self._decided(self.states.apply(event))

    def _decided(self, change: Change | None) -> tuple[list[Dispatch], list[Timer]]:
        if change is None:
            return [], []
        event = change.event
        after = change.job
        newly_ready = ready(after) - change.ready_before
        dispatches = [(after.id, stage, attempt) for stage, attempt in sorted(newly_ready)]
        timers: list[Timer] = []
        if isinstance(event, Job.StageFailed) and event.retry_at is not None:
            timers.append(Timer(after.id, event.stage, event.attempt + 1, event.retry_at,
                                TimerKind.DISPATCH))
        elif isinstance(event, Job.StageDeferred):
            # A rate limit held the attempt back: the same attempt, sent at its time.
            timers.append(Timer(after.id, event.stage, event.attempt, event.until,
                                TimerKind.DISPATCH))
        return dispatches, timers

    def messages(self, dispatches: Iterable[Dispatch]) -> list[dramatiq.Message[Any]]:
        """The `run_stage` messages of some dispatches, with their jobs' correlation ids and
        organisations (for the worker's logs) and traceparents (for its spans)."""
        built = []
        for job_id, stage, attempt in dispatches:
            job = self.states.jobs.get(job_id)
            options = {} if job is None else {
                k: v for k, v in (("correlation_id", job.correlation_id),
                                  ("organization", job.organization),
                                  ("traceparent", job.traceparent)) if v}
            built.append(stage_message(self.queue_of(job), job_id, stage, attempt, options))
        return built

    def queue_of(self, job: Job | None) -> str:
        """The queue a job's stages are sent to.

        Each version's stages go to its own queue (docs/architecture.md §3.9); a job
        enqueued before versions, or not followed, goes to the unversioned one, which
        every worker consumes (and forwards a versioned job from).
        """
        if job is None or job.workflow_version is None:
            return self.queue_name
        return version_queue(self.queue_name, job.workflow, job.workflow_version)

    def _hold(self, curs: Cursor[DictRow], dispatches: Iterable[Dispatch]) -> None:
        """Hold ready attempts for fair dispatch (docs/architecture.md §3.7)."""
        for job_id, stage, attempt in dispatches:
            job = self._job(job_id)
            # A retry's timer may outlive its job (cancelled meanwhile): sent, it would
            # stay in flight with no outcome to end it.
            if job is not None and job.expects(stage, attempt):
                self.admission.hold(curs, job, [(stage, attempt)])

    def _job(self, job_id: UUID) -> Job | None:
        """The job as the relay follows it, else as stored (a retry's timer, a lost stage, for
        a job no longer in the follower's memory); None if it is not there."""
        job = self.states.jobs.get(job_id)
        if job is None:
            with contextlib.suppress(JobNotFoundError):
                job = self.jobs.get(job_id)
        return job

    def _release(self, curs: Cursor[DictRow]) -> int:
        """Send the held attempts whose turn it is, within the limits; return how many."""
        released = self.admission.release(curs)
        self._outbox.extend(self.messages(released))
        return len(released)

    def release_held(self, conn: psycopg.Connection[Any]) -> int:
        """Send what a raised limit let go, with no new event to relay; once a poll."""
        with self._batch():
            with conn.transaction(), conn.cursor(row_factory=dict_row) as curs:
                released = self._release(curs)
            self._send_outbox()
        return released

    def send(self, dispatches: Iterable[Dispatch]) -> None:
        """Send some dispatches now, as one batch; return once every one is confirmed."""
        messages = self.messages(dispatches)
        self.sender.send(messages)
        self.sent += len(messages)

    def recover_stuck(self) -> int:
        """Dispatch again the stage attempts whose worker's lease ran out with no outcome."""
        now = self.clock()
        expired = self.leases.expired(now, self.batch_size)
        for lease in expired:
            try:
                organization = self.jobs.recover_stage(*lease, at=now,
                                                       max_recoveries=self.max_recoveries)
                log.warning("recovered job %s stage %s attempt %d", *lease,
                            extra={"organization": organization})
            except TransitionError:
                pass  # its outcome was recorded after all; the lease is merely stale
            self.leases.release(lease)
        return len(expired)

    def redispatch_lost(self, conn: psycopg.Connection[Any]) -> int:
        """Dispatch again the attempts sent long ago that never started: their message was
        lost (dead-lettered in an outage, docs/architecture.md §4.3); return how many.

        An attempt whose workflow version no live worker runs is not lost: its message
        waits in its queue for one, and a stage must not fail because workers were down.
        Nor is one while a queue its message may be in still holds ready messages: in a
        backlog it may be among them. If the broker cannot say, none is lost this round.
        The relay takes the attempt's lease (`REDISPATCHED`, which no copy takes over) to
        record the re-dispatch, and keeps it until it expires, so a copy arriving meanwhile
        is skipped rather than run beside the next attempt.
        """
        now = self.clock()
        with conn.cursor(row_factory=dict_row) as curs:
            lost = self.admission.store.lost(curs, now - self.redispatch_after, self.batch_size)
        served = WorkerStore(conn).served() if lost else {}
        jobs = [(key, job) for key in lost if (job := self._job(key.job_id)) is not None
                and is_served(served, job.workflow, job.workflow_version)]
        if not jobs:
            return 0
        # Sent when the follower had forgotten its job, a versioned job's message went to
        # the unversioned queue, and a worker forwards it from there: either may hold it.
        queued = self.sender.ready({self.queue_name} | {self.queue_of(job) for _, job in jobs})
        if queued is None:
            log.warning("lost stages not counted: RabbitMQ does not answer")
            return 0
        redispatched = 0
        for key, job in jobs:
            if queued[self.queue_name] or queued[self.queue_of(job)]:
                continue  # maybe still queued behind others, not lost
            lease = Lease(*key)
            if not self.leases.take(lease, now, now + self.redispatch_after,
                                    holder=REDISPATCHED):
                continue  # a worker started it after all
            try:
                organization = self.jobs.redispatch_stage(
                    *key, at=now, max_redispatches=self.max_redispatches)
            except TransitionError:
                self.leases.release(lease)  # it ran, or its job ended: not yet relayed
                continue
            # The lease stays until it expires: a late copy of the old attempt, loaded
            # before the re-dispatch was saved, finds it taken instead of running beside
            # the new attempt. The recovery of expired leases drops it then.
            log.warning("re-dispatched job %s stage %s attempt %d: never started", *key,
                        extra={"organization": organization})
            redispatched += 1
        return redispatched

    def fire_due_timers(self, conn: psycopg.Connection[Any]) -> int:
        """Act on the timers whose time has come; timers live in PostgreSQL, not the broker."""
        now = self.clock()
        with self._batch():
            with conn.transaction(), conn.cursor(row_factory=dict_row) as curs:
                due = self.timers.take_due(curs, now, self.batch_size)
                for timer in due:
                    if timer.kind is TimerKind.WAIT:
                        self.matcher.time_out(timer.job_id, timer.stage, timer.attempt, now)
                    else:
                        self._hold(curs, [(timer.job_id, timer.stage, timer.attempt)])
                self._release(curs)
                self.timers.delete(curs, due)
            self._send_outbox()
        return len(due)
