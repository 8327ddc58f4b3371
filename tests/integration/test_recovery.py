"""Retries with durable backoff, recovery of stages whose worker vanished, and re-dispatch of
stages whose message was lost."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from conveyor.actors.broker import stage_message
from conveyor.actors.stages import Outcome, run_stage
from conveyor.aggregates import Status
from conveyor.application import Jobs
from conveyor.relay.dispatch import BrokerSender, ConfirmedSender, StageSender
from conveyor.relay.relay import Relay
from conveyor.settings import Settings
from conveyor.store.leases import Lease
from conveyor.store.workers import WorkerStore
from conveyor.workflows import RetryPolicy, StageContext, Workflow
from conveyor.workflows.failures import HTTPStatusError

LOST_AFTER = timedelta(minutes=5)
release = threading.Event()
entered = threading.Event()
flaky = Workflow("flaky")


@flaky.stage(retry=RetryPolicy(attempts=3, initial_delay=1, multiplier=2, jitter=0),
             time_limit=5)
def work(ctx: StageContext) -> Any:
    mode = ctx.trigger["mode"]
    if mode == "fail":
        raise ConnectionError("service unreachable")
    if mode == "throttled":
        raise HTTPStatusError(429, retry_after=120)
    if mode == "freeze" and ctx.attempt == 1:
        entered.set()
        release.wait(10)  # a frozen worker, woken after its stage was recovered
    return {"attempt": ctx.attempt}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Harness:
    jobs: Jobs
    relay: Relay
    broker: RabbitmqBroker
    conn: psycopg.Connection[Any]
    clock: Clock

    def job(self, mode: str) -> UUID:
        return self.jobs.enqueue("flaky", f"job:{mode}", {"mode": mode}).job_id

    def names(self, job_id: UUID) -> list[str]:
        return [type(e).__name__ for e in self.jobs.repository.event_store.get(job_id)]

    def dispatches(self) -> list[tuple[str, int, bool]]:
        """What `relay_dispatches` holds: (stage, attempt, sent)."""
        rows = self.conn.execute("SELECT stage, attempt, sent_at IS NOT NULL"
                                 " FROM relay_dispatches ORDER BY stage, attempt").fetchall()
        return [(stage, attempt, sent) for stage, attempt, sent in rows]

    def queue(self, job_id: UUID) -> str:
        return self.relay.queue_of(self.jobs.get(job_id))

    def ready(self, job_id: UUID) -> int:
        return self.broker.get_queue_message_counts(self.queue(job_id))[0]

    def lose_message(self, job_id: UUID) -> None:
        """Drop what the relay sent for the job, as dead-lettering in an outage would."""
        self.broker.flush(self.queue(job_id))


def sender(request: pytest.FixtureRequest, settings: Settings,
           broker: RabbitmqBroker) -> StageSender:
    """The relay's own sender (`ConfirmedSender`), or Dramatiq's `enqueue` if asked."""
    if getattr(request, "param", "confirmed") == "broker":
        return BrokerSender(broker)
    return ConfirmedSender(settings.amqp_url, queue_type=settings.queue_type)


@pytest.fixture
def harness(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Harness]:
    assert settings.database_url
    clock = Clock()
    jobs = Jobs(env=settings.eventsourcing_env(), workflows={"flaky": flaky}, clock=clock)
    broker = RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
    relay = Relay(jobs, broker, settings.queue_name, settings.database_url, max_recoveries=2,
                  redispatch_after=LOST_AFTER, max_redispatches=2, clock=clock,
                  sender=sender(request, settings, broker))
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        # A live worker runs the workflow: a stage none runs is never counted lost.
        WorkerStore(conn).advertise("worker-1", {"flaky": flaky.version})
        yield Harness(jobs, relay, broker, conn, clock)
    relay.close()
    broker.close()
    jobs.close()


def test_a_stage_that_always_fails_is_tried_the_configured_times_at_the_configured_times(
    harness: Harness,
) -> None:
    job_id = harness.job("fail")
    started = harness.clock.now
    for attempt, delay in ((1, 1), (2, 2)):
        # When the attempt fails, Then its retry is due after the policy's delay
        assert run_stage(harness.jobs, job_id, "work", attempt) is Outcome.RETRYING
        job = harness.jobs.get(job_id)
        assert job.status is Status.RETRYING
        assert job.runs["work"].retry_at == harness.clock.now + timedelta(seconds=delay)
        harness.relay.relay_batch(harness.conn)
        # And the relay's timer does not fire a moment before it is due, and fires once after
        harness.clock.now = job.runs["work"].retry_at - timedelta(milliseconds=1)
        assert harness.relay.fire_due_timers(harness.conn) == 0
        harness.clock.now = job.runs["work"].retry_at
        assert harness.relay.fire_due_timers(harness.conn) == 1
        assert harness.jobs.get(job_id).expects("work", attempt + 1)

    assert run_stage(harness.jobs, job_id, "work", 3) is Outcome.FAILED
    job = harness.jobs.get(job_id)
    assert job.status is Status.FAILED
    assert job.error == {"stage": "work", "classification": "RETRYABLE",
                         "error": "ConnectionError: service unreachable"}
    assert harness.names(job_id).count("StageFailed") == 3
    assert harness.clock.now - started == timedelta(seconds=3)


def test_a_429_waits_as_long_as_its_retry_after_asks(harness: Harness) -> None:
    job_id = harness.job("throttled")
    assert run_stage(harness.jobs, job_id, "work", 1) is Outcome.RETRYING
    retry_at = harness.jobs.get(job_id).runs["work"].retry_at
    assert retry_at == harness.clock.now + timedelta(seconds=120)


def test_a_frozen_worker_is_recovered_and_its_late_outcome_refused(harness: Harness) -> None:
    # Given a worker frozen in attempt 1, past its lease
    release.clear()
    entered.clear()
    job_id = harness.job("freeze")
    outcome: list[Outcome] = []
    frozen = threading.Thread(
        target=lambda: outcome.append(run_stage(harness.jobs, job_id, "work", 1)))
    frozen.start()
    assert entered.wait(10)
    harness.clock.now += timedelta(seconds=60)

    # When the relay recovers the stage, and another worker runs attempt 2
    assert harness.relay.recover_stuck() == 1
    assert run_stage(harness.jobs, job_id, "work", 2) is Outcome.COMPLETED

    # Then the frozen worker's outcome is refused when it wakes: one outcome in all
    release.set()
    frozen.join(10)
    assert outcome == [Outcome.DISCARDED]
    assert harness.names(job_id) == ["Enqueued", "Recovered", "Started", "StageCompleted",
                                     "Completed"]


def test_a_stage_recovered_too_often_fails_the_job_as_stuck(harness: Harness) -> None:
    job_id = harness.job("ok")
    for attempt in (1, 2, 3):
        harness.conn.execute(
            "INSERT INTO stage_leases VALUES (%s, 'work', %s, 'gone', %s, %s)",
            (job_id, attempt, harness.clock.now, harness.clock.now),
        )
        harness.clock.now += timedelta(seconds=1)
        assert harness.relay.recover_stuck() == 1

    job = harness.jobs.get(job_id)
    assert job.status is Status.FAILED
    assert job.error is not None and job.error["error"].startswith("stuck")
    assert harness.names(job_id).count("Recovered") == 2


def test_recovery_leaves_a_stage_alone_whose_outcome_was_recorded(harness: Harness) -> None:
    job_id = harness.job("ok")
    assert run_stage(harness.jobs, job_id, "work", 1) is Outcome.COMPLETED
    harness.conn.execute(
        "INSERT INTO stage_leases VALUES (%s, 'work', 1, 'gone', %s, %s)",
        (job_id, harness.clock.now, harness.clock.now),
    )
    harness.clock.now += timedelta(seconds=1)

    assert harness.relay.recover_stuck() == 1
    assert "Recovered" not in harness.names(job_id)
    assert harness.conn.execute("SELECT count(*) FROM stage_leases").fetchone() == (0,)


def test_a_stage_whose_message_was_lost_is_dispatched_again_and_runs_once(
    harness: Harness,
) -> None:
    # Given a stage the relay sent as attempt 1, whose message no worker ever got
    job_id = harness.job("ok")
    harness.relay.relay_batch(harness.conn)
    assert harness.dispatches() == [("work", 1, True)]
    harness.lose_message(job_id)

    # When less than the setting has passed, Then nothing is done
    harness.clock.now += LOST_AFTER - timedelta(seconds=1)
    assert harness.relay.redispatch_lost(harness.conn) == 0

    # When it has passed, Then the stage is re-dispatched as attempt 2, in the history
    harness.clock.now += timedelta(seconds=2)
    assert harness.relay.redispatch_lost(harness.conn) == 1
    assert harness.names(job_id) == ["Enqueued", "StageRedispatched"]
    # And relaying that frees attempt 1's slot and sends attempt 2
    harness.relay.relay_batch(harness.conn)
    assert harness.dispatches() == [("work", 2, True)]
    # And the relay keeps attempt 1's lease until it expires
    assert harness.conn.execute("SELECT stage, attempt, worker FROM stage_leases").fetchall() == [
        ("work", 1, "relay:re-dispatched")]

    # And a late copy of the lost message is refused; attempt 2 runs, once
    assert run_stage(harness.jobs, job_id, "work", 1) is Outcome.SKIPPED
    assert run_stage(harness.jobs, job_id, "work", 2) is Outcome.COMPLETED
    assert harness.names(job_id) == ["Enqueued", "StageRedispatched", "Started",
                                     "StageCompleted", "Completed"]
    harness.relay.relay_batch(harness.conn)
    assert harness.dispatches() == []


def test_a_copy_loaded_before_the_re_dispatch_finds_its_lease_kept_and_does_not_run(
    harness: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker that loaded the job while attempt 1 was still expected
    job_id = harness.job("ok")
    harness.relay.relay_batch(harness.conn)
    harness.lose_message(job_id)
    stale = harness.jobs.get(job_id)
    # When the relay re-dispatches the stage before that worker takes the lease
    harness.clock.now += LOST_AFTER + timedelta(seconds=1)
    assert harness.relay.redispatch_lost(harness.conn) == 1
    monkeypatch.setattr(harness.jobs, "get", lambda _job_id: stale)

    # Then the worker, even with its message redelivered, finds the lease kept and skips;
    # the handler never ran beside attempt 2
    assert run_stage(harness.jobs, job_id, "work", 1, redelivered=True) is Outcome.SKIPPED
    assert harness.names(job_id) == ["Enqueued", "StageRedispatched"]
    # (the kept lease refuses it on its own, even taken over with no version to check)
    now = harness.clock.now
    assert not harness.relay.leases.take(Lease(job_id, "work", 1), now, now + LOST_AFTER,
                                         takeover=True)

    # And once the kept lease expires, the recovery of expired leases drops it, recovering
    # nothing: attempt 1 is no longer expected
    monkeypatch.undo()
    harness.clock.now += LOST_AFTER + timedelta(seconds=1)
    harness.relay.recover_stuck()
    assert harness.conn.execute("SELECT count(*) FROM stage_leases").fetchone() == (0,)
    assert harness.names(job_id) == ["Enqueued", "StageRedispatched"]


def test_a_stage_a_worker_holds_is_not_re_dispatched_however_long_it_runs(
    harness: Harness,
) -> None:
    job_id = harness.job("ok")
    harness.relay.relay_batch(harness.conn)
    harness.conn.execute("INSERT INTO stage_leases VALUES (%s, 'work', 1, 'busy', %s, %s)",
                         (job_id, harness.clock.now, harness.clock.now + 2 * LOST_AFTER))

    harness.clock.now += LOST_AFTER + timedelta(seconds=1)

    assert harness.relay.redispatch_lost(harness.conn) == 0
    assert harness.names(job_id) == ["Enqueued"]


def test_a_stage_no_live_worker_runs_is_not_re_dispatched_its_message_waits_for_one(
    harness: Harness,
) -> None:
    # Given a stage sent long ago, and the only worker gone
    job_id = harness.job("ok")
    harness.relay.relay_batch(harness.conn)
    harness.lose_message(job_id)
    WorkerStore(harness.conn).withdraw("worker-1")
    harness.clock.now += LOST_AFTER + timedelta(seconds=1)

    # Then it is not counted lost
    assert harness.relay.redispatch_lost(harness.conn) == 0
    assert harness.names(job_id) == ["Enqueued"]

    # And once a worker runs the workflow again, it is
    WorkerStore(harness.conn).advertise("worker-2", {"flaky": flaky.version})
    assert harness.relay.redispatch_lost(harness.conn) == 1


def test_a_stage_lost_more_often_than_allowed_fails_its_job_and_frees_its_slot(
    harness: Harness,
) -> None:
    job_id = harness.job("ok")
    harness.relay.relay_batch(harness.conn)
    for _ in range(3):
        harness.lose_message(job_id)
        harness.clock.now += LOST_AFTER + timedelta(seconds=1)
        assert harness.relay.redispatch_lost(harness.conn) == 1
        harness.relay.relay_batch(harness.conn)

    job = harness.jobs.get(job_id)
    assert job.status is Status.FAILED
    assert job.error == {"stage": "work", "classification": "PERMANENT",
                         "error": "lost: never started after 2 re-dispatches"}
    assert harness.names(job_id).count("StageRedispatched") == 2
    assert harness.dispatches() == []


def test_a_lost_stage_is_counted_from_its_last_send_by_a_relay_that_took_over(
    harness: Harness,
) -> None:
    # Given a stage sent at T, and a relay that becomes active 4 minutes later (it sends its
    # in-flight attempts again, as every relay does when it becomes active)
    job_id = harness.job("ok")
    harness.relay.relay_batch(harness.conn)
    harness.clock.now += timedelta(minutes=4)
    harness.relay.admission.forget()
    assert harness.relay.release_held(harness.conn) == 1  # the one in flight, sent again
    harness.lose_message(job_id)

    # When the setting has passed since T but not since the second send, Then it is not lost
    harness.clock.now += LOST_AFTER - timedelta(minutes=3)
    assert harness.relay.redispatch_lost(harness.conn) == 0
    # And once it has passed since the second send, it is
    harness.clock.now += timedelta(minutes=3, seconds=1)
    assert harness.relay.redispatch_lost(harness.conn) == 1
    assert harness.names(job_id) == ["Enqueued", "StageRedispatched"]


@pytest.mark.parametrize("harness", ["confirmed", "broker"], indirect=True)
def test_a_stage_whose_message_is_still_queued_is_not_lost_until_its_queue_is_drained(
    harness: Harness,
) -> None:
    # Given a stage sent long ago whose message still waits in its queue, in a backlog
    job_id = harness.job("ok")
    harness.relay.relay_batch(harness.conn)
    harness.clock.now += LOST_AFTER + timedelta(seconds=1)
    assert harness.ready(job_id) == 1

    # Then it is not counted lost, and none of its re-dispatches is used
    assert harness.relay.redispatch_lost(harness.conn) == 0
    assert harness.names(job_id) == ["Enqueued"]

    # When its queue is drained with no worker having started it
    harness.lose_message(job_id)

    # Then the next chore re-dispatches it, once
    assert harness.relay.redispatch_lost(harness.conn) == 1
    assert harness.relay.redispatch_lost(harness.conn) == 0
    assert harness.names(job_id) == ["Enqueued", "StageRedispatched"]
    # And its next attempt, queued in turn, is not counted lost however long it waits
    harness.relay.relay_batch(harness.conn)
    assert harness.dispatches() == [("work", 2, True)]
    harness.clock.now += LOST_AFTER + timedelta(seconds=1)
    assert harness.relay.redispatch_lost(harness.conn) == 0
    assert harness.names(job_id) == ["Enqueued", "StageRedispatched"]


def test_a_queue_nobody_declared_holds_no_message(harness: Harness, queue_name: str) -> None:
    assert harness.relay.sender.ready([f"{queue_name}.never"]) == {f"{queue_name}.never": 0}


def test_while_rabbitmq_does_not_answer_no_stage_is_counted_lost(harness: Harness) -> None:
    # Given a stage sent long ago whose message is gone, and a broker that does not answer
    job_id = harness.job("ok")
    harness.relay.relay_batch(harness.conn)
    harness.lose_message(job_id)
    harness.clock.now += LOST_AFTER + timedelta(seconds=1)
    harness.relay.sender.close()
    harness.relay.sender = ConfirmedSender("amqp://guest:guest@127.0.0.1:1/", timeout=5)

    # Then nothing is counted lost this round
    assert harness.relay.redispatch_lost(harness.conn) == 0
    assert harness.names(job_id) == ["Enqueued"]


def test_a_message_sent_to_the_unversioned_queue_keeps_its_versioned_stage_from_being_lost(
    harness: Harness, settings: Settings,
) -> None:
    # Given a versioned job's attempt whose copy was sent, as for a job the relay's follower
    # had forgotten, to the unversioned queue, where it still waits for a worker to forward it
    job_id = harness.job("ok")
    harness.relay.relay_batch(harness.conn)
    harness.lose_message(job_id)
    assert harness.queue(job_id) != settings.queue_name
    harness.broker.enqueue(stage_message(settings.queue_name, job_id, "work", 1, {}))
    harness.clock.now += LOST_AFTER + timedelta(seconds=1)

    # Then it is not counted lost while that queue holds it
    assert harness.relay.redispatch_lost(harness.conn) == 0
    # And once it is drained, it is
    harness.broker.flush(settings.queue_name)
    assert harness.relay.redispatch_lost(harness.conn) == 1

