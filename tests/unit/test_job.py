"""The Job aggregate's state machine: what each command does in each status, and what it refuses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor.aggregates import (
    Classification,
    Job,
    JobError,
    JobFinishedError,
    StageState,
    Status,
    TransitionError,
    UnknownStageError,
    job_id_for,
)

NOW = datetime.now(UTC)
RETRY_AT = NOW + timedelta(seconds=30)
DEADLINE = NOW + timedelta(hours=1)

SEQUENTIAL: list[dict[str, Any]] = [
    {"stage": "a", "after": []},
    {"stage": "b", "after": ["a"]},
]
# a -> [b, c] -> d
PARALLEL: list[dict[str, Any]] = [
    {"stage": "a", "after": []},
    {"stage": "b", "after": ["a"]},
    {"stage": "c", "after": ["a"]},
    {"stage": "d", "after": ["b", "c"]},
]

Command = Callable[[Job], None]


# Commands, as callables on a job, with the arguments a worker would send -----------------


def start(stage: str = "a", attempt: int = 1) -> Command:
    return lambda job: job.start_stage(stage, attempt, NOW)


def complete(stage: str = "a", attempt: int = 1) -> Command:
    return lambda job: job.complete_stage(stage, attempt, {"stage": stage}, NOW)


def fail(
    stage: str = "a",
    attempt: int = 1,
    classification: Classification = Classification.PERMANENT,
    retry_at: datetime | None = None,
) -> Command:
    return lambda job: job.fail_stage(stage, attempt, classification, "boom", NOW, retry_at)


def fail_with_retry(stage: str = "a", attempt: int = 1) -> Command:
    return fail(stage, attempt, Classification.RETRYABLE, RETRY_AT)


def pause(stage: str = "a", attempt: int = 1) -> Command:
    return lambda job: job.pause(stage, attempt, "review.submitted", "pr-1", DEADLINE, NOW)


def resume(stage: str = "a") -> Command:
    return lambda job: job.resume(stage, "event-1", {"approved": True})


def time_out(stage: str = "a", *, fail_job: bool) -> Command:
    return lambda job: job.time_out_wait(stage, fail_job=fail_job, at=NOW)


def recover(stage: str = "a", attempt: int = 1) -> Command:
    return lambda job: job.recover(stage, attempt, NOW)


def retry() -> Command:
    return lambda job: job.retry("alice", NOW)


def cancel() -> Command:
    return lambda job: job.cancel("no longer needed", "alice", NOW)


# Jobs in a given state ----------------------------------------------------------------------


def enqueue(plan: list[dict[str, Any]] = SEQUENTIAL, key: str = "acme/widgets#1") -> Job:
    plan = [{"stage": s["stage"], "after": list(s["after"])} for s in plan]
    return Job(key=key, workflow="code_review", plan=plan, trigger={"pull_request": 1})


def given(*history: Command, plan: list[dict[str, Any]] = SEQUENTIAL) -> Job:
    """A job enqueued then driven through `history`, its events already collected."""
    job = enqueue(plan)
    for command in history:
        command(job)
    job.collect_events()
    return job


# The canonical way into each status, on the sequential plan a -> b.
HISTORY: dict[Status, tuple[Command, ...]] = {
    Status.PENDING: (),
    Status.PROCESSING: (start(),),
    Status.WAITING_FOR_EVENT: (start(), pause()),
    Status.RETRYING: (start(), fail_with_retry()),
    Status.COMPLETED: (start(), complete(), start("b"), complete("b")),
    Status.FAILED: (start(), fail()),
    Status.CANCELLED: (cancel(),),
}


def job_in(status: Status) -> Job:
    """A job in `status` (stage a is the one in play), with its events already collected."""
    job = given(*HISTORY[status])
    assert job.status is status
    return job


def names(events: Any) -> list[str]:
    return [type(e).__name__ for e in events]


def snapshot(job: Job) -> tuple[Any, ...]:
    return (
        job.status,
        dict(job.runs),
        list(job.attempt_log),
        job.terminal,
        job.error,
    )


# Allowed transitions ------------------------------------------------------------------------

P, W, R = Status.PROCESSING, Status.WAITING_FOR_EVENT, Status.RETRYING

ALLOWED = [
    # PENDING: stage a is pending with attempt 1.
    pytest.param((), start(), P, ["Started"], id="pending-start_stage"),
    pytest.param((), recover(), Status.PENDING, ["Recovered"], id="pending-recover"),
    pytest.param((), cancel(), Status.CANCELLED, ["Cancelled"], id="pending-cancel"),
    # PROCESSING: stage a is running attempt 1.
    pytest.param(HISTORY[P], complete(), P, ["StageCompleted"], id="processing-complete_stage"),
    pytest.param(
        HISTORY[P], fail(), Status.FAILED, ["StageFailed", "Failed"],
        id="processing-fail_stage-permanent",
    ),
    pytest.param(
        HISTORY[P], fail(classification=Classification.RETRYABLE), Status.FAILED,
        ["StageFailed", "Failed"], id="processing-fail_stage-retryable-attempts-spent",
    ),
    pytest.param(
        HISTORY[P], fail_with_retry(), R, ["StageFailed"], id="processing-fail_stage-retry_at"
    ),
    pytest.param(HISTORY[P], pause(), W, ["Paused"], id="processing-pause"),
    pytest.param(HISTORY[P], recover(), P, ["Recovered"], id="processing-recover"),
    pytest.param(HISTORY[P], cancel(), Status.CANCELLED, ["Cancelled"], id="processing-cancel"),
    pytest.param(
        (start(), complete()), start("b"), P, ["Started"], id="processing-start_next_stage"
    ),
    pytest.param(
        (start(), complete(), start("b")), complete("b"), Status.COMPLETED,
        ["StageCompleted", "Completed"], id="processing-complete_last_stage",
    ),
    pytest.param((start(), pause(), resume()), start(), P, ["Started"], id="resumed-start_stage"),
    pytest.param(
        (start(), pause(), time_out(fail_job=False)), start(), P, ["Started"],
        id="timed-out-start_stage",
    ),
    # WAITING_FOR_EVENT: stage a is waiting, attempt 1.
    pytest.param(HISTORY[W], resume(), P, ["Resumed"], id="waiting-resume"),
    pytest.param(
        HISTORY[W], time_out(fail_job=False), P, ["WaitTimedOut"], id="waiting-time_out-continue"
    ),
    pytest.param(
        HISTORY[W], time_out(fail_job=True), Status.FAILED, ["WaitTimedOut", "Failed"],
        id="waiting-time_out-fail_job",
    ),
    pytest.param(HISTORY[W], cancel(), Status.CANCELLED, ["Cancelled"], id="waiting-cancel"),
    # RETRYING: stage a is scheduled for attempt 2.
    pytest.param(HISTORY[R], start("a", 2), P, ["Started"], id="retrying-start_stage"),
    pytest.param(HISTORY[R], recover("a", 2), P, ["Recovered"], id="retrying-recover"),
    pytest.param(HISTORY[R], cancel(), Status.CANCELLED, ["Cancelled"], id="retrying-cancel"),
    # FAILED: only a manual retry is accepted.
    pytest.param(HISTORY[Status.FAILED], retry(), P, ["Retried"], id="failed-retry"),
    pytest.param(
        (start(), pause(), time_out(fail_job=True)), retry(), P, ["Retried"],
        id="failed-by-wait-time_out-retry",
    ),
]


@pytest.mark.parametrize(("history", "command", "expected_status", "expected_events"), ALLOWED)
def test_an_allowed_command_moves_the_job_on_and_records_its_events(
    history: tuple[Command, ...],
    command: Command,
    expected_status: Status,
    expected_events: list[str],
) -> None:
    # Given a job driven through `history`
    job = given(*history)
    version = job.version

    # When the command is given
    command(job)

    # Then the job has its new status and exactly the expected events, versioned in order
    events = job.collect_events()
    assert names(events) == expected_events
    assert job.status is expected_status
    assert [e.originator_version for e in events] == list(
        range(version + 1, version + 1 + len(events))
    )
    assert job.version == version + len(events)


# Refused transitions ------------------------------------------------------------------------

T, U = TransitionError, UnknownStageError

REFUSED = [
    # PENDING: stage a is pending with attempt 1, b waits for a.
    pytest.param(Status.PENDING, start("a", 2), T, id="pending-start_stage-wrong-attempt"),
    pytest.param(Status.PENDING, start("b"), T, id="pending-start_stage-predecessor-not-done"),
    pytest.param(Status.PENDING, start("zzz"), U, id="pending-start_stage-unknown-stage"),
    pytest.param(Status.PENDING, complete(), T, id="pending-complete_stage"),
    pytest.param(Status.PENDING, complete("zzz"), U, id="pending-complete_stage-unknown-stage"),
    pytest.param(Status.PENDING, fail(), T, id="pending-fail_stage"),
    pytest.param(Status.PENDING, fail_with_retry(), T, id="pending-fail_stage-retry_at"),
    pytest.param(Status.PENDING, pause(), T, id="pending-pause"),
    pytest.param(Status.PENDING, resume(), T, id="pending-resume"),
    pytest.param(Status.PENDING, time_out(fail_job=False), T, id="pending-time_out-continue"),
    pytest.param(Status.PENDING, time_out(fail_job=True), T, id="pending-time_out-fail_job"),
    pytest.param(Status.PENDING, recover("a", 2), T, id="pending-recover-wrong-attempt"),
    pytest.param(Status.PENDING, retry(), T, id="pending-retry"),
    # PROCESSING: stage a is running attempt 1.
    pytest.param(P, start(), T, id="processing-start_stage-duplicate"),
    pytest.param(P, start("b"), T, id="processing-start_stage-predecessor-not-done"),
    pytest.param(P, complete("a", 2), T, id="processing-complete_stage-wrong-attempt"),
    pytest.param(P, complete("b"), T, id="processing-complete_stage-not-running"),
    pytest.param(P, fail("a", 2), T, id="processing-fail_stage-wrong-attempt"),
    pytest.param(
        P, fail(retry_at=RETRY_AT), T, id="processing-fail_stage-permanent-with-retry_at"
    ),
    pytest.param(
        P, fail(classification=Classification.CANCELLED, retry_at=RETRY_AT), T,
        id="processing-fail_stage-cancelled-with-retry_at",
    ),
    pytest.param(P, fail("zzz"), U, id="processing-fail_stage-unknown-stage"),
    pytest.param(P, pause("a", 2), T, id="processing-pause-wrong-attempt"),
    pytest.param(P, pause("zzz"), U, id="processing-pause-unknown-stage"),
    pytest.param(P, resume(), T, id="processing-resume"),
    pytest.param(P, time_out(fail_job=False), T, id="processing-time_out-continue"),
    pytest.param(P, time_out(fail_job=True), T, id="processing-time_out-fail_job"),
    pytest.param(P, recover("a", 2), T, id="processing-recover-wrong-attempt"),
    pytest.param(P, retry(), T, id="processing-retry"),
    # WAITING_FOR_EVENT: stage a is waiting, attempt 1.
    pytest.param(W, start(), T, id="waiting-start_stage"),
    pytest.param(W, complete(), T, id="waiting-complete_stage"),
    pytest.param(W, fail(), T, id="waiting-fail_stage"),
    pytest.param(W, fail_with_retry(), T, id="waiting-fail_stage-retry_at"),
    pytest.param(W, pause(), T, id="waiting-pause"),
    pytest.param(W, resume("b"), T, id="waiting-resume-other-stage"),
    pytest.param(W, time_out("b", fail_job=False), T, id="waiting-time_out-other-stage"),
    pytest.param(W, recover(), T, id="waiting-recover"),
    pytest.param(W, retry(), T, id="waiting-retry"),
    # RETRYING: stage a is scheduled for attempt 2.
    pytest.param(R, start("a", 1), T, id="retrying-start_stage-old-attempt"),
    pytest.param(R, start("a", 3), T, id="retrying-start_stage-future-attempt"),
    pytest.param(R, complete("a", 2), T, id="retrying-complete_stage"),
    pytest.param(R, complete("a", 1), T, id="retrying-complete_stage-old-attempt"),
    pytest.param(R, fail("a", 2), T, id="retrying-fail_stage"),
    pytest.param(R, fail_with_retry("a", 2), T, id="retrying-fail_stage-retry_at"),
    pytest.param(R, pause("a", 2), T, id="retrying-pause"),
    pytest.param(R, resume(), T, id="retrying-resume"),
    pytest.param(R, time_out(fail_job=True), T, id="retrying-time_out"),
    pytest.param(R, recover("a", 1), T, id="retrying-recover-old-attempt"),
    pytest.param(R, retry(), T, id="retrying-retry"),
    # A finished job refuses a retry unless it FAILED.
    pytest.param(Status.COMPLETED, retry(), JobFinishedError, id="completed-retry"),
    pytest.param(Status.CANCELLED, retry(), JobFinishedError, id="cancelled-retry"),
]

EVERY_COMMAND_BUT_RETRY = [
    pytest.param(start(), id="start_stage"),
    pytest.param(start("b"), id="start_stage-b"),
    pytest.param(start("zzz"), id="start_stage-unknown-stage"),
    pytest.param(complete(), id="complete_stage"),
    pytest.param(complete("b"), id="complete_stage-b"),
    pytest.param(fail(), id="fail_stage"),
    pytest.param(fail_with_retry(), id="fail_stage-retry_at"),
    pytest.param(pause(), id="pause"),
    pytest.param(resume(), id="resume"),
    pytest.param(time_out(fail_job=False), id="time_out-continue"),
    pytest.param(time_out(fail_job=True), id="time_out-fail_job"),
    pytest.param(recover(), id="recover"),
    pytest.param(recover("a", 2), id="recover-a-2"),
    pytest.param(cancel(), id="cancel"),
]


def assert_refused(job: Job, command: Command, error: type[JobError]) -> None:
    """`command` raises exactly `error`, and the job neither appends an event nor changes."""
    job.collect_events()
    version = job.version
    before = snapshot(job)

    with pytest.raises(JobError) as raised:
        command(job)

    assert type(raised.value) is error
    assert job.version == version
    assert job.collect_events() == []
    assert snapshot(job) == before


@pytest.mark.parametrize(("status", "command", "error"), REFUSED)
def test_a_refused_command_raises_its_domain_error_and_appends_nothing(
    status: Status, command: Command, error: type[JobError]
) -> None:
    # Given a job in `status`
    job = job_in(status)

    # When the command is given, Then it raises exactly `error` and nothing changes
    assert_refused(job, command, error)


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.FAILED, Status.CANCELLED])
@pytest.mark.parametrize("command", EVERY_COMMAND_BUT_RETRY)
def test_a_finished_job_refuses_every_command_with_job_finished_error(
    status: Status, command: Command
) -> None:
    # Given a job in a terminal status
    job = job_in(status)

    # When any command is given, Then JobFinishedError is raised and nothing is appended
    assert_refused(job, command, JobFinishedError)


def test_a_finished_job_has_no_ready_stages_and_expects_no_message() -> None:
    # Given jobs in each terminal status
    for status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
        job = job_in(status)

        # Then nothing is ready and no run_stage message is expected
        assert status.is_terminal
        assert job.ready_stages() == []
        assert not job.expects("a", 1)
        assert not job.expects("b", 1)


def test_a_retried_job_runs_its_failed_stage_again_with_the_next_attempt() -> None:
    # Given a job whose stage a failed permanently
    job = job_in(Status.FAILED)
    assert job.error == {"stage": "a", "classification": "PERMANENT", "error": "boom"}

    # When it is retried
    job.retry("alice", NOW)

    # Then stage a is pending again with attempt 2, a fresh failure count and no error
    assert job.runs["a"].state is StageState.PENDING
    assert job.runs["a"].attempt == 2
    assert job.runs["a"].failures == 0
    assert job.error is None
    assert job.terminal is None
    assert job.ready_stages() == ["a"]
    assert not job.expects("a", 1)
    assert job.expects("a", 2)


def test_a_resumed_stage_runs_again_with_the_payload_of_its_event() -> None:
    # Given a job whose stage a waits for an event
    job = job_in(Status.WAITING_FOR_EVENT)
    assert job.runs["a"].wait is not None
    assert job.runs["a"].wait["deadline"] == DEADLINE

    # When the event arrives
    job.resume("a", "event-1", {"approved": True})

    # Then the stage is ready again with the same attempt, and the payload is kept for it
    assert job.runs["a"].wait is None
    assert job.runs["a"].resumed_with == {"approved": True}
    assert job.ready_stages() == ["a"]
    assert job.expects("a", 1)


def test_an_event_that_resumed_one_of_its_jobs_waits_is_refused_by_another() -> None:
    # Given branches b and c of one job, both waiting, b resumed by event-1
    job = given(start(), complete(), start("b"), pause("b"), start("c"), pause("c"),
                resume("b"), plan=PARALLEL)
    assert job.resumed_by == {"event-1"}

    # When event-1 is offered to c too, Then it is refused: one event resumes one wait
    assert_refused(job, resume("c"), TransitionError)
    # And another event resumes it
    job.resume("c", "event-2", None)
    assert job.resumed_by == {"event-1", "event-2"}


def test_a_cancelled_job_keeps_its_reason() -> None:
    # Given a running job
    job = job_in(Status.PROCESSING)

    # When it is cancelled
    job.cancel("superseded", "alice", NOW, superseded_by="acme/widgets#2")

    # Then its reason is kept and its status is CANCELLED
    assert job.cancel_reason == "superseded"
    assert job.status is Status.CANCELLED


# A parallel plan: a -> [b, c] -> d -----------------------------------------------------------


def test_a_parallel_plan_makes_both_branches_ready_once_their_predecessor_is_done() -> None:
    # Given a job on the plan a -> [b, c] -> d
    job = given(plan=PARALLEL)
    assert job.ready_stages() == ["a"]

    # When stage a completes
    start()(job)
    complete()(job)

    # Then both branches are ready and may start one after the other
    assert job.ready_stages() == ["b", "c"]
    assert job.after("d") == ["b", "c"]
    job.start_stage("b", 1, NOW)
    assert job.ready_stages() == ["c"]
    job.start_stage("c", 1, NOW)
    assert job.ready_stages() == []
    assert job.status is Status.PROCESSING


def test_a_parallel_plan_waits_at_the_join_until_every_branch_is_done() -> None:
    # Given both branches running
    job = given(start(), complete(), start("b"), start("c"), plan=PARALLEL)

    # When only branch b completes
    job.complete_stage("b", 1, "b-out", NOW)

    # Then d is not ready and cannot start yet
    assert job.ready_stages() == []
    assert not job.expects("d", 1)
    assert_refused(job, start("d"), TransitionError)

    # When branch c completes too
    job.complete_stage("c", 1, "c-out", NOW)

    # Then d is ready, and completing it completes the job
    assert job.ready_stages() == ["d"]
    job.start_stage("d", 1, NOW)
    job.complete_stage("d", 1, "d-out", NOW)
    assert job.status is Status.COMPLETED
    assert job.outputs == {"a": {"stage": "a"}, "b": "b-out", "c": "c-out", "d": "d-out"}


def test_a_failure_in_one_branch_fails_the_job_and_the_other_branch_is_refused() -> None:
    # Given both branches running
    job = given(start(), complete(), start("b"), start("c"), plan=PARALLEL)

    # When branch b fails permanently
    job.fail_stage("b", 1, Classification.PERMANENT, "bad input", NOW)

    # Then the job fails, and branch c's late outcome is refused
    assert names(job.collect_events()) == ["StageFailed", "Failed"]
    assert job.status is Status.FAILED
    assert job.error == {"stage": "b", "classification": "PERMANENT", "error": "bad input"}
    assert job.ready_stages() == []
    assert_refused(job, complete("c"), JobFinishedError)


def test_a_retried_parallel_job_reruns_the_failed_and_interrupted_branches_only() -> None:
    # Given a job that failed in branch b while branch c was still running
    job = given(
        start(), complete(), start("b"), start("c"), fail("b"), plan=PARALLEL
    )

    # When it is retried
    job.retry("alice", NOW)

    # Then b and c run again with their next attempts, and a stays done
    assert {s: run.state for s, run in job.runs.items()} == {
        "a": StageState.DONE,
        "b": StageState.PENDING,
        "c": StageState.PENDING,
        "d": StageState.PENDING,
    }
    assert {s: run.attempt for s, run in job.runs.items()} == {"a": 1, "b": 2, "c": 2, "d": 1}
    assert job.ready_stages() == ["b", "c"]


def test_a_branch_waiting_for_an_event_outranks_a_branch_retrying() -> None:
    # Given branch b waiting for an event and branch c scheduled for a retry
    job = given(
        start(), complete(), start("b"), start("c"), pause("b"), fail_with_retry("c"),
        plan=PARALLEL,
    )

    # Then the job waits for the event, yet branch c's retry may still start
    assert job.status is Status.WAITING_FOR_EVENT
    assert job.expects("c", 2)
    job.start_stage("c", 2, NOW)
    assert job.status is Status.PROCESSING


def test_the_job_is_retrying_while_its_only_branch_left_waits_for_a_retry() -> None:
    # Given branch b done and branch c scheduled for a retry
    job = given(start(), complete(), start("b"), start("c"), complete("b"),
                fail_with_retry("c"), plan=PARALLEL)

    # Then the job is RETRYING with c's retry time recorded
    assert job.status is Status.RETRYING
    assert job.runs["c"].retry_at == RETRY_AT
    assert job.runs["c"].failures == 1

    # When c's retry starts, Then its retry time is cleared
    job.start_stage("c", 2, NOW)
    assert all(run.retry_at is None for run in job.runs.values())


# Identity -----------------------------------------------------------------------------------


def test_the_job_id_of_a_key_is_always_the_same() -> None:
    # Given one key, When its id is computed twice, Then both ids are equal
    assert job_id_for("github:acme/widgets#7@abc") == job_id_for("github:acme/widgets#7@abc")


def test_different_keys_have_different_job_ids() -> None:
    assert job_id_for("github:acme/widgets#7@abc") != job_id_for("github:acme/widgets#7@abd")


def test_a_new_job_is_named_by_the_id_of_its_key() -> None:
    # When a job is enqueued under a key
    job = enqueue(key="github:acme/widgets#7@abc")

    # Then its id is the key's id and it starts PENDING at version 1 with an Enqueued event
    assert job.id == job_id_for("github:acme/widgets#7@abc")
    assert job.key == "github:acme/widgets#7@abc"
    assert job.status is Status.PENDING
    assert job.version == 1
    assert names(job.collect_events()) == ["Enqueued"]


# expects() ----------------------------------------------------------------------------------


def test_a_fresh_job_expects_its_first_stage_at_attempt_one_only() -> None:
    # Given a fresh job
    job = job_in(Status.PENDING)

    # Then only (a, 1) is expected: not another attempt, a blocked stage or an unknown one
    assert job.expects("a", 1)
    assert not job.expects("a", 0)
    assert not job.expects("a", 2)
    assert not job.expects("b", 1)
    assert not job.expects("zzz", 1)


def test_a_duplicate_message_is_not_expected() -> None:
    # Given stage a started with attempt 1
    job = job_in(Status.PROCESSING)

    # Then a second delivery of (a, 1) is not expected, nor after a is done
    assert not job.expects("a", 1)
    job.complete_stage("a", 1, None, NOW)
    assert not job.expects("a", 1)
    assert job.expects("b", 1)


def test_after_a_scheduled_retry_only_the_next_attempt_is_expected() -> None:
    # Given stage a failed with a retry scheduled
    job = job_in(Status.RETRYING)

    # Then attempt 2 is expected and attempt 1 is not
    assert job.runs["a"].attempt == 2
    assert job.expects("a", 2)
    assert not job.expects("a", 1)
    assert not job.expects("a", 3)


def test_after_recover_the_lost_attempt_is_refused() -> None:
    # Given stage a running attempt 1 whose worker vanished
    job = job_in(Status.PROCESSING)

    # When the stage is recovered
    job.recover("a", 1, NOW)

    # Then attempt 2 is expected, and the lost attempt's late outcome is refused
    assert job.expects("a", 2)
    assert not job.expects("a", 1)
    assert_refused(job, complete("a", 1), TransitionError)
    assert_refused(job, fail("a", 1), TransitionError)
    job.start_stage("a", 2, NOW)
    job.complete_stage("a", 2, None, NOW)
    assert job.runs["a"].state is StageState.DONE
