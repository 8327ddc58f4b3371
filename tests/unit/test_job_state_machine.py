"""Random command sequences against the Job aggregate, checking its invariants after every step."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from conveyor.aggregates import Classification, Job, JobError, StageState, Status
from conveyor.application import Jobs
from conveyor.changes import JobFollower, final_jobs
from conveyor.projections.history import changed_attempts
from conveyor.projections.metrics import tally
from conveyor.projections.rows import attempt_row, job_row

NOW = datetime.now(UTC)

SEQUENTIAL = [
    {"stage": "a", "after": []},
    {"stage": "b", "after": ["a"]},
    {"stage": "c", "after": ["b"]},
]
# a -> [b, c] -> d
PARALLEL = [
    {"stage": "a", "after": []},
    {"stage": "b", "after": ["a"]},
    {"stage": "c", "after": ["a"]},
    {"stage": "d", "after": ["b", "c"]},
]

# Every stage of either plan, plus one that neither has.
any_stage = st.sampled_from(["a", "b", "c", "d", "zzz"])
small_attempts = st.integers(min_value=0, max_value=4)
TERMINAL_EVENTS = {"Completed", "Failed", "Cancelled"}


def state_of(job: Job) -> tuple[Any, ...]:
    return (
        job.status,
        dict(job.runs),
        list(job.attempt_log),
        job.started,
        job.terminal,
        job.error,
    )


class JobStateMachine(RuleBasedStateMachine):
    """Any command, on any stage, with any small attempt; domain errors are expected refusals."""

    def __init__(self) -> None:
        super().__init__()
        self.job: Job
        self.events: list[Any] = []
        self.clock = NOW

    @initialize(plan=st.sampled_from([SEQUENTIAL, PARALLEL]))
    def enqueue(self, plan: list[dict[str, Any]]) -> None:
        plan = [{"stage": s["stage"], "after": list(s["after"])} for s in plan]
        self.job = Job(key="acme/widgets#1", workflow="w", plan=plan, trigger={},
                       organization="acme")
        self.events.extend(self.job.collect_events())

    def stage(self, data: st.DataObject) -> str:
        """Any stage, often one in play (ready, running, waiting or retrying), to make progress."""
        in_play = self.job.ready_stages() + [
            stage for stage, run in self.job.runs.items()
            if run.state not in (StageState.PENDING, StageState.DONE)
        ]
        likely = st.sampled_from(in_play) if in_play else any_stage
        return data.draw(st.one_of(likely, likely, likely, any_stage), label="stage")

    def attempt(self, data: st.DataObject, stage: str) -> int:
        """Any small attempt, often the one the job expects, to make progress."""
        current = self.job.runs[stage].attempt if stage in self.job.runs else 1
        expected = st.just(current)
        return data.draw(st.one_of(expected, expected, small_attempts), label="attempt")

    def now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def give(self, command: Callable[[], None]) -> None:
        """Run a command; a refusal must leave no event and no change behind."""
        before = (self.job.version, state_of(self.job))
        try:
            command()
        except JobError:
            assert self.job.collect_events() == []
            assert (self.job.version, state_of(self.job)) == before
        else:
            self.events.extend(self.job.collect_events())

    # Commands -------------------------------------------------------------------------------

    @rule(data=st.data())
    def start_stage(self, data: st.DataObject) -> None:
        stage = self.stage(data)
        attempt = self.attempt(data, stage)
        self.give(lambda: self.job.start_stage(stage, attempt, self.now()))

    @rule(data=st.data())
    def complete_stage(self, data: st.DataObject) -> None:
        stage = self.stage(data)
        attempt = self.attempt(data, stage)
        self.give(lambda: self.job.complete_stage(stage, attempt, {"n": attempt}, self.now()))

    @rule(
        data=st.data(),
        classification=st.sampled_from(Classification),
        retry=st.booleans(),
    )
    def fail_stage(
        self, data: st.DataObject, classification: Classification, retry: bool
    ) -> None:
        stage = self.stage(data)
        attempt = self.attempt(data, stage)
        at = self.now()
        retry_at = at + timedelta(seconds=5) if retry else None
        self.give(
            lambda: self.job.fail_stage(stage, attempt, classification, "boom", at, retry_at)
        )

    @rule(data=st.data())
    def defer(self, data: st.DataObject) -> None:
        stage = self.stage(data)
        attempt = self.attempt(data, stage)
        at = self.now()
        self.give(lambda: self.job.defer(stage, attempt, "github_api", at + timedelta(seconds=2),
                                         at))

    @rule(data=st.data())
    def pause(self, data: st.DataObject) -> None:
        stage = self.stage(data)
        attempt = self.attempt(data, stage)
        at = self.now()
        self.give(
            lambda: self.job.pause(stage, attempt, "review", "k", at + timedelta(hours=1), at)
        )

    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        stage = self.stage(data)
        self.give(lambda: self.job.resume(stage, "event-1", {"ok": True}))

    @rule(data=st.data(), fail_job=st.booleans())
    def time_out_wait(self, data: st.DataObject, fail_job: bool) -> None:
        stage = self.stage(data)
        self.give(lambda: self.job.time_out_wait(stage, fail_job=fail_job, at=self.now()))

    @rule(data=st.data())
    def recover(self, data: st.DataObject) -> None:
        stage = self.stage(data)
        attempt = self.attempt(data, stage)
        self.give(lambda: self.job.recover(stage, attempt, self.now()))

    @rule()
    def retry(self) -> None:
        self.give(lambda: self.job.retry("alice", self.now()))

    @rule(roll=st.integers(min_value=1, max_value=6))
    def cancel(self, roll: int) -> None:
        # Cancelling ends every run early; rolling a six keeps it a rare, still reachable step.
        if roll == 6:
            self.give(lambda: self.job.cancel("stop", "alice", self.now()))

    @rule(data=st.data(), finish=st.booleans())
    def a_worker_runs_a_runnable_stage(self, data: st.DataObject, finish: bool) -> None:
        """A well-behaved worker: start a stage the job expects, and maybe complete it."""
        job = self.job
        runnable = [s for s, run in job.runs.items() if job.expects(s, run.attempt)]
        if not runnable:
            return
        stage = data.draw(st.sampled_from(runnable), label="runnable stage")
        attempt = job.runs[stage].attempt
        self.give(lambda: job.start_stage(stage, attempt, self.now()))
        if finish:
            self.give(lambda: job.complete_stage(stage, attempt, {"n": attempt}, self.now()))

    # Invariants -----------------------------------------------------------------------------

    @invariant()
    def at_most_one_terminal_event_since_the_last_retry(self) -> None:
        names = [type(e).__name__ for e in self.events]
        since = names[len(names) - names[::-1].index("Retried"):] if "Retried" in names else names
        terminal = [n for n in since if n in TERMINAL_EVENTS]
        assert len(terminal) <= 1, names
        # And a terminal event is always the last one, or followed only by a Retried.
        if terminal:
            assert since[-1] in TERMINAL_EVENTS

    @invariant()
    def versions_are_contiguous_from_one(self) -> None:
        versions = [e.originator_version for e in self.events]
        assert versions == list(range(1, len(self.events) + 1))
        assert self.job.version == len(self.events)
        assert all(e.originator_id == self.job.id for e in self.events)

    @invariant()
    def a_finished_job_accepts_nothing(self) -> None:
        job = self.job
        if not job.status.is_terminal:
            return
        at = self.now()
        commands: list[Callable[[], None]] = []
        for stage in ("a", "b", "c", "d", "zzz"):
            attempt = job.runs[stage].attempt if stage in job.runs else 1
            commands += [
                partial(job.start_stage, stage, attempt, at),
                partial(job.complete_stage, stage, attempt, None, at),
                partial(job.fail_stage, stage, attempt, Classification.PERMANENT, "x", at),
                partial(job.fail_stage, stage, attempt, Classification.RETRYABLE, "x", at, at),
                partial(job.pause, stage, attempt, "review", "k", at, at),
                partial(job.resume, stage, "event-1", None),
                partial(job.time_out_wait, stage, fail_job=True, at=at),
                partial(job.time_out_wait, stage, fail_job=False, at=at),
                partial(job.recover, stage, attempt, at),
                partial(job.defer, stage, attempt, "github_api", at, at),
            ]
        commands.append(partial(job.cancel, "stop", "alice", at))
        if job.status is not Status.FAILED:
            # A FAILED job accepts exactly one command: a manual retry.
            commands.append(partial(job.retry, "alice", at))
        version, state = job.version, state_of(job)
        for command in commands:
            try:
                command()
            except JobError:
                pass
            else:
                raise AssertionError(f"a {job.status} job accepted a command")
            assert job.collect_events() == []
            assert (job.version, state_of(job)) == (version, state)

    @invariant()
    def replaying_the_events_rebuilds_the_live_job(self) -> None:
        replayed = functools.reduce(lambda job, e: e.mutate(job), self.events, None)
        assert replayed is not None
        assert replayed.id == self.job.id
        assert replayed.version == self.job.version
        assert replayed.status is self.job.status
        assert replayed.runs == self.job.runs
        assert state_of(replayed) == state_of(self.job)
        assert replayed.outputs == self.job.outputs


    @invariant()
    def the_read_models_agree_with_the_job(self) -> None:
        """The projector's fold of the stored events gives the job's own state, in any batches."""
        # Given the events as the projector reads them: stored, then decoded
        decoded = [MAPPER.to_domain_event(MAPPER.to_stored_event(e)) for e in self.events]
        # When a follower that has lost its memory between batches folds them
        cut = len(decoded) // 2
        follower = JobFollower(load=lambda job_id, version: functools.reduce(
            lambda job, e: e.mutate(job), decoded[:version], None))
        changes = follower.apply_all(decoded[:cut])
        follower.jobs.clear()
        changes += follower.apply_all(decoded[cut:])
        [projected] = final_jobs(changes).values()
        row, job = job_row(projected), self.job
        # Then the `jobs` row is the job's state
        assert row == job_row(job)
        assert row["status"] == job.status
        assert row["version"] == job.version
        assert row["stage_states"] == {s: str(run.state) for s, run in job.runs.items()}
        assert row["stage_attempts"] == {s: run.attempt for s, run in job.runs.items()}
        assert row["current_stages"] == job.current_stages()
        assert [(e["stage"], e["attempt"]) for e in row["stages"]] == [
            (e.stage, e.attempt) for e in job.attempt_log]
        # And the stage attempts of the history are the job's attempts
        assert changed_attempts(changes) == [attempt_row(job, a) for a in job.attempt_log]
        # And the metrics count this one job once in its status, among every organisation's
        # jobs and among its own organisation's
        assert +tally(changes).status == Counter({
            ("", job.workflow, str(job.status)): 1, ("acme", job.workflow, str(job.status)): 1})


MAPPER = Jobs(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper

JobStateMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, database=None
)
test_the_job_keeps_its_invariants_under_any_command_sequence = JobStateMachine.TestCase
