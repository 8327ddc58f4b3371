"""The job's state machine for a stage whose message was lost (`Job.StageRedispatched`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conveyor.aggregates import Job, StageState, Status, TransitionError
from conveyor.relay.admission import ended_attempts
from conveyor.relay.fair import Key
from tests.unit.test_job import (
    NOW,
    cancel,
    complete,
    enqueue,
    fail_with_retry,
    given,
    pause,
    start,
)


def redispatch(stage: str = "a", attempt: int = 1, most: int | None = 3) -> Callable[[Job], None]:
    return lambda job: job.redispatch(stage, attempt, NOW, max_redispatches=most)


def test_a_stage_sent_and_never_started_is_ready_again_as_the_next_attempt() -> None:
    # Given a job whose first stage was dispatched as attempt 1
    job = given()

    # When its message is found lost and the stage is re-dispatched
    redispatch()(job)

    # Then the stage is ready as attempt 2, no attempt was started, and the event says so
    [event] = job.collect_events()
    assert isinstance(event, Job.StageRedispatched)
    assert (event.stage, event.attempt, event.at) == ("a", 1, NOW)
    run = job.runs["a"]
    assert (run.state, run.attempt, run.redispatches, run.failures) == (
        StageState.PENDING, 2, 1, 0)
    assert job.attempt_log == []
    assert job.ready_stages() == ["a"]
    # And a late copy of the lost message is refused, the next attempt runs
    assert job.expects("a", 2) and not job.expects("a", 1)
    with pytest.raises(TransitionError):
        job.start_stage("a", 1, NOW)
    start("a", 2)(job)
    complete("a", 2)(job)
    assert job.runs["a"].state is StageState.DONE


def test_a_retry_whose_message_was_lost_is_re_dispatched_as_a_pending_stage() -> None:
    # Given a stage failed at attempt 1 whose retry, attempt 2, was sent and lost
    job = given(start(), fail_with_retry())

    redispatch("a", 2)(job)

    run = job.runs["a"]
    assert (run.state, run.attempt, run.retry_at) == (StageState.PENDING, 3, None)
    assert job.ready_stages() == ["a"]


@pytest.mark.parametrize("history", [
    pytest.param((start(),), id="started"),
    pytest.param((start(), pause()), id="waiting"),
    pytest.param((start(), complete()), id="done"),
    pytest.param((cancel(),), id="cancelled"),
])
def test_an_attempt_that_started_or_ended_is_not_re_dispatched(
    history: tuple[Callable[[Job], None], ...],
) -> None:
    job = given(*history)

    with pytest.raises(TransitionError):
        redispatch()(job)
    assert job.collect_events() == []


def test_a_stage_lost_more_often_than_allowed_fails_the_job_as_lost() -> None:
    # Given a stage re-dispatched twice, its third message lost too
    job = given(redispatch("a", 1, most=2), redispatch("a", 2, most=2))

    # When it is found lost once more
    redispatch("a", 3, most=2)(job)

    # Then the job fails, permanently, saying why
    assert job.status is Status.FAILED
    assert job.error == {"stage": "a", "classification": "PERMANENT",
                         "error": "lost: never started after 2 re-dispatches"}
    assert [type(e).__name__ for e in job.collect_events()] == ["Failed"]


def test_a_re_dispatch_ends_the_lost_attempts_fair_dispatch_slot() -> None:
    job = given()
    redispatch()(job)
    [event] = job.collect_events()

    assert ended_attempts(event) == Key(job.id, "a", 1)


def test_the_re_dispatch_event_replays_to_the_same_state() -> None:
    job = enqueue()
    for command in (redispatch(), start("a", 2)):
        command(job)

    replayed = None
    for event in job.collect_events():
        replayed = event.mutate(replayed)

    assert isinstance(replayed, Job)
    assert replayed.runs == job.runs
    assert (replayed.version, replayed.attempt_log) == (job.version, job.attempt_log)
