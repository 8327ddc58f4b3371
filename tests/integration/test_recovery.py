"""Retries with durable backoff, and recovery of stages whose worker vanished."""

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

from conveyor.actors.stages import Outcome, run_stage
from conveyor.aggregates import Status
from conveyor.application import Jobs
from conveyor.relay.relay import Relay
from conveyor.settings import Settings
from conveyor.workflows import RetryPolicy, StageContext, Workflow
from conveyor.workflows.failures import HTTPStatusError

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
    conn: psycopg.Connection[Any]
    clock: Clock

    def job(self, mode: str) -> UUID:
        return self.jobs.enqueue("flaky", f"job:{mode}", {"mode": mode}).job_id

    def names(self, job_id: UUID) -> list[str]:
        return [type(e).__name__ for e in self.jobs.repository.event_store.get(job_id)]


@pytest.fixture
def harness(settings: Settings) -> Iterator[Harness]:
    assert settings.database_url
    clock = Clock()
    jobs = Jobs(env=settings.eventsourcing_env(), workflows={"flaky": flaky}, clock=clock)
    broker = RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
    relay = Relay(jobs, broker, settings.queue_name, settings.database_url, max_recoveries=2,
                  clock=clock)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield Harness(jobs, relay, conn, clock)
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
