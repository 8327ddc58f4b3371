"""The job's state machine for a stage a rate limit holds back (`Job.StageDeferred`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from conveyor.aggregates import AttemptOutcome, Job, StageState, Status, TransitionError
from conveyor.projections.rows import job_row
from tests.unit.test_job import (
    NOW,
    PARALLEL,
    cancel,
    complete,
    fail,
    fail_with_retry,
    given,
    pause,
    recover,
    retry,
    start,
)

UNTIL = NOW + timedelta(seconds=3)


def defer(stage: str = "a", attempt: int = 1) -> Callable[[Job], None]:
    return lambda job: job.defer(stage, attempt, "github_api", UNTIL, NOW)


def test_a_stage_whose_tokens_do_not_fit_is_deferred_with_its_attempt_unspent() -> None:
    # Given a job whose first stage is ready
    job = given()

    # When its tokens do not fit and it is deferred before it starts
    defer()(job)

    # Then the stage waits for the limit, the same attempt, and no attempt was started
    [event] = job.collect_events()
    assert isinstance(event, Job.StageDeferred)
    run = job.runs["a"]
    assert (run.state, run.attempt, run.failures, run.retries) == (StageState.DEFERRED, 1, 0, 0)
    assert run.deferral == {"resource": "github_api", "until": UNTIL}
    assert job.attempt_log == []
    # And it is queued work: the job has not started, and expects that same attempt
    assert job.status is Status.PENDING
    assert job.current_stages() == ["a"]
    assert job.expects("a", 1) and not job.expects("a", 2)
    assert job.ready_stages() == []  # the relay's timer sends it, not the event


def test_the_job_row_shows_what_a_deferred_stage_waits_for() -> None:
    row = job_row(given(defer()))

    assert row["waiting_for"] == [{"kind": "rate_limit", "stage": "a", "resource": "github_api",
                                   "until": UNTIL.isoformat()}]
    assert row["attempt"] == 1


def test_a_throttled_running_attempt_ends_as_deferred_and_runs_again_as_the_same_attempt() -> None:
    # Given a running stage whose service answered "too many requests"
    job = given(start(), defer())

    # Then its attempt ended as deferred, and the same attempt may start again
    [entry] = job.attempt_log
    assert (entry.attempt, entry.outcome) == (1, AttemptOutcome.DEFERRED)
    start()(job)
    complete()(job)
    assert [(a.attempt, a.outcome) for a in job.attempt_log] == [
        (1, AttemptOutcome.DEFERRED), (1, AttemptOutcome.COMPLETED)]
    assert job.runs["a"].deferral is None
    assert job_row(job)["waiting_for"] == []


def test_a_deferred_stage_may_be_deferred_again() -> None:
    job = given(defer(), defer())
    assert job.runs["a"].state is StageState.DEFERRED


def test_a_deferred_retry_keeps_the_retrys_attempt() -> None:
    job = given(start(), fail_with_retry(), defer("a", 2))
    assert (job.runs["a"].state, job.runs["a"].attempt) == (StageState.DEFERRED, 2)
    assert job.runs["a"].failures == 1


def test_a_stage_not_yet_ready_cannot_be_deferred() -> None:
    job = given()
    with pytest.raises(TransitionError):
        defer("b")(job)
    assert job.collect_events() == []


def test_an_attempt_the_job_does_not_expect_cannot_be_deferred() -> None:
    job = given(start(), complete())
    with pytest.raises(TransitionError):
        defer("b", 2)(job)
    assert job.collect_events() == []


def test_a_deferred_stage_of_a_started_job_keeps_the_job_processing() -> None:
    job = given(start(), complete(), defer("b"))
    assert job.status is Status.PROCESSING


@pytest.mark.parametrize("history", [
    (start(), complete()),  # done
    (start(), pause()),  # waiting for an outside event
    (start(), fail()),  # failed: the job is finished
    (cancel(),),
])
def test_a_stage_that_is_done_waiting_or_finished_cannot_be_deferred(
    history: tuple[Callable[[Job], None], ...],
) -> None:
    job = given(*history)
    with pytest.raises(TransitionError):
        defer()(job)
    assert job.collect_events() == []


def test_a_lost_worker_of_a_deferred_stage_is_recovered_as_a_new_attempt() -> None:
    job = given(defer(), recover())
    assert (job.runs["a"].state, job.runs["a"].attempt) == (StageState.PENDING, 2)
    assert job.runs["a"].deferral is None


def test_a_manual_retry_runs_a_deferred_branch_again_afresh() -> None:
    # Given a -> [b, c]: b deferred by its limit while c failed the job
    job = given(start(), complete(), defer("b"), start("c"), fail("c"), plan=PARALLEL)
    assert job.status is Status.FAILED

    # When the job is retried by hand
    retry()(job)

    # Then b is ready again as a new attempt, no longer waiting for the limit
    assert set(job.ready_stages()) == {"b", "c"}
    assert (job.runs["b"].attempt, job.runs["b"].deferral) == (2, None)
