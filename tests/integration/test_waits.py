"""Pausing for outside events, matched by the relay in log order, on the real services."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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
from conveyor.workflows import Pause, StageContext, Workflow

TRIALS = 100
ENDINGS = {"Resumed", "WaitTimedOut", "Cancelled"}

waiting = Workflow("waiting")


@waiting.stage()
def ask(ctx: StageContext) -> Any:
    if ctx.woken is None:
        return Pause("test.done", key=ctx.trigger["key"], timeout=3600,
                     on_timeout=ctx.trigger.get("on_timeout", "fail"))
    return {"woken": ctx.woken, "payload": ctx.resumed_with}


@waiting.stage()
def finish(ctx: StageContext) -> Any:
    return {"asked": ctx.outputs["ask"]}


def ask_then_report(ctx: StageContext) -> Any:
    """Pause for the trigger's key once; woken, report how and with what."""
    if ctx.woken is None:
        return Pause("test.done", key=ctx.trigger["key"], timeout=3600,
                     on_timeout=ctx.trigger.get("on_timeout", "fail"))
    return {"woken": ctx.woken, "payload": ctx.resumed_with}


# One job pausing twice for one type and key: in two parallel branches, or one after the other.
branches = Workflow("branches")
branches.stage("left")(ask_then_report)
branches.stage("right", after=[])(ask_then_report)
in_turn = Workflow("in_turn")
in_turn.stage("first")(ask_then_report)
in_turn.stage("second")(ask_then_report)


@dataclass
class Harness:
    jobs: Jobs
    relay: Relay
    conn: psycopg.Connection[Any]

    def paused_job(self, key: str, job: str | None = None, **trigger: Any) -> UUID:
        job_key = f"job:{job or key}"
        job_id = self.jobs.enqueue("waiting", job_key, {"key": key, **trigger}).job_id
        assert run_stage(self.jobs, job_id, "ask", 1) is Outcome.PAUSED
        return job_id

    def event(self, event_id: str, key: str, payload: Any = None) -> bool:
        return self.jobs.record_outside_event(event_id, "test.done", key, payload, "test").created

    def drain(self) -> None:
        while self.relay.relay_batch(self.conn):
            pass

    def resumed_with(self, job_id: UUID, *stages: str) -> list[Any]:
        """Run the resumed stages to completion; the payloads they were woken with."""
        for stage in stages:
            assert run_stage(self.jobs, job_id, stage, 1) is Outcome.COMPLETED
        outputs = self.jobs.get(job_id).outputs
        return [outputs[stage]["payload"] for stage in stages]

    def endings(self, job_id: UUID) -> list[str]:
        names = [type(e).__name__ for e in self.jobs.repository.event_store.get(job_id)]
        return [name for name in names if name in ENDINGS]


@pytest.fixture
def harness(settings: Settings) -> Iterator[Harness]:
    assert settings.database_url
    jobs = Jobs(env=settings.eventsourcing_env(),
                workflows={"waiting": waiting, "branches": branches, "in_turn": in_turn})
    broker = RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
    relay = Relay(jobs, broker, settings.queue_name, settings.database_url,
                  retention=timedelta(hours=24))
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield Harness(jobs, relay, conn)
    broker.close()
    jobs.close()


def race(*actions: Callable[[], object]) -> None:
    barrier = threading.Barrier(len(actions))

    def run(action: Callable[[], object]) -> object:
        barrier.wait()
        return action()

    with ThreadPoolExecutor(len(actions)) as pool:
        for future in [pool.submit(run, action) for action in actions]:
            future.result()


def test_an_awaited_event_resumes_the_job_which_runs_on_with_its_payload(harness: Harness) -> None:
    job_id = harness.paused_job("k1")
    assert harness.jobs.get(job_id).status is Status.WAITING_FOR_EVENT

    assert harness.event("e1", "k1", {"nodes": 3})
    harness.drain()

    assert harness.endings(job_id) == ["Resumed"]
    assert run_stage(harness.jobs, job_id, "ask", 1) is Outcome.COMPLETED
    assert harness.jobs.get(job_id).outputs["ask"] == {"woken": "resumed",
                                                      "payload": {"nodes": 3}}


def test_an_event_for_a_key_nobody_waits_on_changes_nothing(harness: Harness) -> None:
    job_id = harness.paused_job("k1")
    version = harness.jobs.get(job_id).version

    harness.event("e1", "other-key")
    harness.drain()

    assert harness.jobs.get(job_id).version == version
    assert harness.jobs.get(job_id).status is Status.WAITING_FOR_EVENT


def test_a_repeated_event_id_is_stored_once(harness: Harness) -> None:
    assert harness.event("e1", "k1") is True
    assert harness.event("e1", "k1") is False


def test_an_event_older_than_the_retention_window_does_not_resume_a_later_pause(
    harness: Harness,
) -> None:
    harness.event("e-old", "k1")
    harness.drain()
    # The pause happens two days after the event, past the 24 h retention window.
    harness.jobs.clock = lambda: datetime.now(UTC) + timedelta(days=2)
    job_id = harness.paused_job("k1")
    harness.drain()

    assert harness.endings(job_id) == []
    assert harness.jobs.get(job_id).status is Status.WAITING_FOR_EVENT


def test_one_event_resumes_every_job_waiting_for_its_type_and_key(harness: Harness) -> None:
    jobs = [harness.paused_job("shared", job=f"j{n}") for n in range(3)]
    harness.event("e1", "shared")
    harness.drain()
    assert [harness.endings(job_id) for job_id in jobs] == [["Resumed"]] * 3


def test_a_wait_past_its_deadline_fails_the_job_or_continues_as_declared(
    harness: Harness,
) -> None:
    fails = harness.paused_job("k-fail")
    continues = harness.paused_job("k-continue", on_timeout="continue")
    harness.drain()
    harness.conn.execute("UPDATE relay_timers SET due_at = now() - interval '1 second'")

    assert harness.relay.fire_due_timers(harness.conn) == 2

    failed = harness.jobs.get(fails)
    assert failed.status is Status.FAILED
    assert failed.error == {"stage": "ask", "classification": "PERMANENT",
                            "error": "wait_timed_out"}
    assert harness.jobs.get(continues).status is Status.PROCESSING
    assert run_stage(harness.jobs, continues, "ask", 1) is Outcome.COMPLETED
    assert harness.jobs.get(continues).outputs["ask"]["woken"] == "timed_out"


def test_an_event_published_just_before_the_pause_still_resumes_it(harness: Harness) -> None:
    for trial in range(TRIALS):
        key = f"early-{trial}"
        job_id = harness.jobs.enqueue("waiting", f"job:{key}", {"key": key}).job_id
        race(lambda key=key: harness.event(f"e-{key}", key),
             lambda job_id=job_id: run_stage(harness.jobs, job_id, "ask", 1))
        harness.drain()
        assert harness.endings(job_id) == ["Resumed"], f"trial {trial}"


def test_two_copies_of_one_event_at_once_resume_the_wait_once(harness: Harness) -> None:
    for trial in range(TRIALS):
        key = f"copies-{trial}"
        job_id = harness.paused_job(key)
        race(lambda key=key: harness.event(f"e-{key}", key),
             lambda key=key: harness.event(f"e-{key}", key))
        harness.drain()
        assert harness.endings(job_id) == ["Resumed"], f"trial {trial}"


def test_an_event_racing_the_timeout_leaves_exactly_one_outcome(harness: Harness) -> None:
    outcomes = set()
    for trial in range(TRIALS):
        key = f"timeout-{trial}"
        job_id = harness.paused_job(key)
        harness.drain()
        harness.event(f"e-{key}", key)
        now = datetime.now(UTC)
        # The relay's timer and its log reader race on separate connections.
        with psycopg.connect(harness.relay.database_url, autocommit=True) as other:
            race(lambda job_id=job_id, now=now: harness.relay.matcher.time_out(
                job_id, "ask", 1, now),
                 lambda other=other: harness.relay.relay_batch(other))
        harness.drain()
        endings = harness.endings(job_id)
        assert len(endings) == 1, f"trial {trial}: {endings}"
        outcomes.add(endings[0])
    assert outcomes <= {"Resumed", "WaitTimedOut"}


def test_an_event_racing_a_cancel_leaves_exactly_one_outcome(harness: Harness) -> None:
    for trial in range(TRIALS):
        key = f"cancel-{trial}"
        job_id = harness.paused_job(key)
        harness.drain()
        harness.event(f"e-{key}", key)
        with psycopg.connect(harness.relay.database_url, autocommit=True) as other:
            race(lambda job_id=job_id: harness.jobs.cancel(job_id, "test", "tester"),
                 lambda other=other: harness.relay.relay_batch(other))
        harness.drain()
        # Either the cancel ended the wait (and the event was a no-op), or the event
        # resumed it first and the cancel then stopped the running job: never both
        # ending the wait.
        endings = harness.endings(job_id)
        assert endings in (["Cancelled"], ["Resumed", "Cancelled"]), f"trial {trial}: {endings}"
        assert harness.jobs.get(job_id).status is Status.CANCELLED


def test_one_event_resumes_only_the_first_of_one_jobs_two_pauses_for_its_key(
    harness: Harness,
) -> None:
    # Given one job whose two branches paused for the same type and key, right first
    job_id = harness.jobs.enqueue("branches", "job:two-pauses", {"key": "k1"}).job_id
    assert run_stage(harness.jobs, job_id, "right", 1) is Outcome.PAUSED
    assert run_stage(harness.jobs, job_id, "left", 1) is Outcome.PAUSED
    harness.drain()

    # When one event of that type and key arrives
    harness.event("e1", "k1", "one")
    harness.drain()

    # Then it resumes the pause first in the log, and the other still waits
    assert harness.endings(job_id) == ["Resumed"]
    runs = harness.jobs.get(job_id).runs
    assert (runs["right"].state, runs["left"].state) == ("pending", "waiting")

    # And the next event resumes the other one
    harness.event("e2", "k1", "two")
    harness.drain()
    assert harness.endings(job_id) == ["Resumed", "Resumed"]
    assert harness.resumed_with(job_id, "right", "left") == ["one", "two"]


def test_an_event_that_resumed_a_pause_does_not_resume_its_jobs_next_pause_for_its_key(
    harness: Harness,
) -> None:
    # Given one job's first stage resumed by e1, and e2 arriving before anything pauses again
    job_id = harness.jobs.enqueue("in_turn", "job:in-turn", {"key": "k1"}).job_id
    assert run_stage(harness.jobs, job_id, "first", 1) is Outcome.PAUSED
    harness.drain()
    harness.event("e1", "k1", "one")
    harness.drain()
    assert run_stage(harness.jobs, job_id, "first", 1) is Outcome.COMPLETED

    # When its second stage pauses for the same type and key
    assert run_stage(harness.jobs, job_id, "second", 1) is Outcome.PAUSED
    harness.drain()

    # Then e1, kept for pauses to come, does not resume it: it was this job's already
    assert harness.endings(job_id) == ["Resumed"]
    assert harness.jobs.get(job_id).status is Status.WAITING_FOR_EVENT

    # And the next event does
    harness.event("e2", "k1", "two")
    harness.drain()
    assert run_stage(harness.jobs, job_id, "second", 1) is Outcome.COMPLETED
    assert harness.jobs.get(job_id).outputs["second"]["payload"] == "two"


def test_two_kept_events_resume_one_jobs_two_later_pauses_one_each(harness: Harness) -> None:
    # Given two events for a key, before anything waits for it
    harness.event("e1", "k1", "one")
    harness.event("e2", "k1", "two")
    harness.drain()

    # When one job's two branches pause for that key
    job_id = harness.jobs.enqueue("branches", "job:kept", {"key": "k1"}).job_id
    assert run_stage(harness.jobs, job_id, "left", 1) is Outcome.PAUSED
    assert run_stage(harness.jobs, job_id, "right", 1) is Outcome.PAUSED
    harness.drain()

    # Then each is resumed by its own event, in the order the pauses and events came
    assert harness.endings(job_id) == ["Resumed", "Resumed"]
    assert harness.resumed_with(job_id, "left", "right") == ["one", "two"]


def test_an_event_a_jobs_first_wait_refuses_resumes_its_next_one(harness: Harness) -> None:
    # Given one job's two branches paused for one key, left first
    job_id = harness.jobs.enqueue("branches", "job:refused",
                                  {"key": "k1", "on_timeout": "continue"}).job_id
    assert run_stage(harness.jobs, job_id, "left", 1) is Outcome.PAUSED
    assert run_stage(harness.jobs, job_id, "right", 1) is Outcome.PAUSED
    harness.drain()

    # When an event comes, and left's wait times out just after it, before the relay relays it
    harness.event("e1", "k1", "one")
    harness.jobs.time_out_wait(job_id, "left", 1, datetime.now(UTC))
    harness.drain()

    # Then the event, refused by left's ended wait, resumes right
    assert harness.endings(job_id) == ["WaitTimedOut", "Resumed"]
    assert harness.resumed_with(job_id, "left", "right") == [None, "one"]
