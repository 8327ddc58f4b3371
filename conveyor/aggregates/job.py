"""The Job aggregate: one run of a workflow for one trigger, and the state machine it obeys."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate, event

# Job ids are UUIDv5 of the idempotency key in this namespace, so the same key
# always names the same aggregate (DESIGN 3.3).
JOB_NAMESPACE = uuid.UUID("6f1c2d1e-9c55-4a52-9a7e-1c0e5b9f3a10")


def job_id_for(key: str) -> uuid.UUID:
    """The deterministic id of the job enqueued under `key`."""
    return uuid.uuid5(JOB_NAMESPACE, key)


class Status(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    WAITING_FOR_EVENT = "WAITING_FOR_EVENT"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
# What a wait does when its deadline passes: fail the job, or run the stage without the event.
ON_TIMEOUT = frozenset({"fail", "continue"})


class Classification(StrEnum):
    RETRYABLE = "RETRYABLE"
    PERMANENT = "PERMANENT"
    CANCELLED = "CANCELLED"


class StageState(StrEnum):
    """Where one stage of a job stands; the job's status is derived from these."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    RETRY_SCHEDULED = "retry_scheduled"
    DONE = "done"
    FAILED = "failed"


def ready_stages(plan: list[dict[str, Any]], stages: Mapping[str, str]) -> list[str]:
    """The stages of `plan` that are pending with every predecessor done."""
    return [
        step["stage"]
        for step in plan
        if stages[step["stage"]] == StageState.PENDING
        and all(stages[p] == StageState.DONE for p in step["after"])
    ]


def derive_status(
    plan: list[dict[str, Any]],
    stages: Mapping[str, str],
    *,
    started: bool,
    terminal: str | None,
) -> Status:
    """A job's status from its stages' states; shared by the aggregate and its read models."""
    if terminal is not None:
        return Status(terminal)
    if not started:
        return Status.PENDING
    states = set(stages.values())
    if ready_stages(plan, stages) or StageState.RUNNING in states:
        return Status.PROCESSING
    if StageState.WAITING in states:
        return Status.WAITING_FOR_EVENT
    if StageState.RETRY_SCHEDULED in states:
        return Status.RETRYING
    return Status.PROCESSING


class Job(Aggregate):
    """A workflow run whose every change is an event; commands refuse what the state forbids."""

    @staticmethod
    def create_id(key: str) -> uuid.UUID:
        return job_id_for(key)

    class Enqueued(Aggregate.Created):
        key: str
        workflow: str
        plan: list[dict[str, Any]]
        trigger: dict[str, Any]
        correlation_id: str | None
        delivery: dict[str, Any] | None

    @event(Enqueued)
    def __init__(
        self,
        key: str,
        workflow: str,
        plan: list[dict[str, Any]],
        trigger: dict[str, Any],
        correlation_id: str | None = None,
        delivery: dict[str, Any] | None = None,
    ) -> None:
        # `delivery` keeps the raw request (compressed) for audit and replay; the
        # job itself never reads it.
        self.key = key
        self.workflow = workflow
        # The plan is the workflow's shape at enqueue time: [{"stage", "after"}, ...].
        # Keeping it in the event makes the job replayable whatever the code becomes.
        self.plan = plan
        self.trigger = trigger
        self.correlation_id = correlation_id
        self.stages: dict[str, StageState] = {s["stage"]: StageState.PENDING for s in plan}
        self.attempts: dict[str, int] = {s["stage"]: 1 for s in plan}
        self.failures: dict[str, int] = {s["stage"]: 0 for s in plan}
        self.outputs: dict[str, Any] = {}
        self.waits: dict[str, dict[str, Any]] = {}
        self.retry_at: dict[str, datetime] = {}
        self.resumed_with: dict[str, Any] = {}
        self.woken: dict[str, str] = {}  # stage -> "resumed" | "timed_out"
        self.recoveries: dict[str, int] = {}
        self.started = False
        self.terminal: Status | None = None
        self.error: dict[str, Any] | None = None
        self.cancel_reason: str | None = None

    # Queries ----------------------------------------------------------------

    @property
    def status(self) -> Status:
        return derive_status(self.plan, self.stages, started=self.started, terminal=self.terminal)

    def after(self, stage: str) -> list[str]:
        """The stages that must be done before `stage` may run."""
        for step in self.plan:
            if step["stage"] == stage:
                return list(step["after"])
        raise UnknownStageError(f"job {self.id} has no stage {stage!r}")

    def ready_stages(self) -> list[str]:
        """Stages that may be dispatched now: pending, with every predecessor done."""
        if self.terminal is not None:
            return []
        return ready_stages(self.plan, self.stages)

    def expects(self, stage: str, attempt: int) -> bool:
        """Whether a `run_stage(stage, attempt)` message should do any work now."""
        if self.terminal is not None or stage not in self.stages:
            return False
        if self.attempts[stage] != attempt:
            return False
        if self.stages[stage] is StageState.RETRY_SCHEDULED:
            return True
        return stage in self.ready_stages()

    # Commands ---------------------------------------------------------------

    def start_stage(self, stage: str, attempt: int, at: datetime) -> None:
        self.check_expects(stage, attempt)
        self._started(stage=stage, attempt=attempt, at=at)

    class Started(Aggregate.Event):
        stage: str
        attempt: int
        at: datetime

    @event(Started)
    def _started(self, stage: str, attempt: int, at: datetime) -> None:
        self.started = True
        self.stages[stage] = StageState.RUNNING
        self.retry_at.pop(stage, None)

    def complete_stage(self, stage: str, attempt: int, output: Any, at: datetime) -> None:
        self.check_running(stage, attempt)
        self._stage_completed(stage=stage, attempt=attempt, output=output, at=at)
        if all(state is StageState.DONE for state in self.stages.values()):
            self._completed(at=at)

    class StageCompleted(Aggregate.Event):
        stage: str
        attempt: int
        output: Any
        at: datetime

    @event(StageCompleted)
    def _stage_completed(self, stage: str, attempt: int, output: Any, at: datetime) -> None:
        self.stages[stage] = StageState.DONE
        self.outputs[stage] = output

    def fail_stage(
        self,
        stage: str,
        attempt: int,
        classification: Classification,
        error: str,
        at: datetime,
        retry_at: datetime | None = None,
    ) -> None:
        """Record a failed attempt; without `retry_at` the job fails with it."""
        self.check_running(stage, attempt)
        if retry_at is not None and classification is not Classification.RETRYABLE:
            raise TransitionError(f"a {classification} failure cannot be retried")
        self._stage_failed(
            stage=stage,
            attempt=attempt,
            classification=str(classification),
            error=error,
            at=at,
            retry_at=retry_at,
        )
        if retry_at is None:
            self._failed(stage=stage, classification=str(classification), error=error, at=at)

    class StageFailed(Aggregate.Event):
        stage: str
        attempt: int
        classification: str
        error: str
        at: datetime
        retry_at: datetime | None

    @event(StageFailed)
    def _stage_failed(
        self,
        stage: str,
        attempt: int,
        classification: str,
        error: str,
        at: datetime,
        retry_at: datetime | None,
    ) -> None:
        self.failures[stage] += 1
        if retry_at is None:
            self.stages[stage] = StageState.FAILED
        else:
            self.stages[stage] = StageState.RETRY_SCHEDULED
            self.attempts[stage] = attempt + 1
            self.retry_at[stage] = retry_at

    def pause(
        self,
        stage: str,
        attempt: int,
        event_type: str,
        key: str,
        deadline: datetime,
        at: datetime,
        on_timeout: str = "fail",
        request: dict[str, Any] | None = None,
    ) -> None:
        """Wait for an outside event; `request`, if given, is published by the relay."""
        self.check_running(stage, attempt)
        if on_timeout not in ON_TIMEOUT:
            raise TransitionError(f"on_timeout must be one of {sorted(ON_TIMEOUT)}")
        self._paused(stage=stage, attempt=attempt, event_type=event_type, key=key,
                     deadline=deadline, at=at, on_timeout=on_timeout, request=request)

    class Paused(Aggregate.Event):
        stage: str
        attempt: int
        event_type: str
        key: str
        deadline: datetime
        at: datetime
        on_timeout: str
        request: dict[str, Any] | None

    @event(Paused)
    def _paused(
        self,
        stage: str,
        attempt: int,
        event_type: str,
        key: str,
        deadline: datetime,
        at: datetime,
        on_timeout: str,
        request: dict[str, Any] | None,
    ) -> None:
        self.stages[stage] = StageState.WAITING
        self.waits[stage] = {"event_type": event_type, "key": key, "deadline": deadline,
                             "attempt": attempt, "on_timeout": on_timeout}

    def resume(self, stage: str, event_id: str, payload: Any) -> None:
        self.check_waiting(stage)
        self._resumed(stage=stage, event_id=event_id, payload=payload)

    class Resumed(Aggregate.Event):
        stage: str
        event_id: str
        payload: Any

    @event(Resumed)
    def _resumed(self, stage: str, event_id: str, payload: Any) -> None:
        del self.waits[stage]
        self.stages[stage] = StageState.PENDING
        self.resumed_with[stage] = payload
        self.woken[stage] = "resumed"

    def time_out_wait(self, stage: str, *, at: datetime, fail_job: bool | None = None) -> None:
        """The wait's deadline passed: fail the job, or let the stage continue without the event.

        Which one is the wait's `on_timeout` policy unless `fail_job` says otherwise.
        """
        self.check_waiting(stage)
        if fail_job is None:
            fail_job = self.waits[stage]["on_timeout"] == "fail"
        self._wait_timed_out(stage=stage, at=at)
        if fail_job:
            self._failed(stage=stage, classification=str(Classification.PERMANENT),
                         error="wait_timed_out", at=at)

    class WaitTimedOut(Aggregate.Event):
        stage: str
        at: datetime

    @event(WaitTimedOut)
    def _wait_timed_out(self, stage: str, at: datetime) -> None:
        del self.waits[stage]
        self.stages[stage] = StageState.PENDING
        self.resumed_with[stage] = None
        self.woken[stage] = "timed_out"

    def recover(
        self, stage: str, attempt: int, at: datetime, max_recoveries: int | None = None
    ) -> None:
        """Dispatch a stage again whose worker vanished; the lost attempt's outcome is refused.

        After `max_recoveries` recoveries of one stage, the job fails as stuck instead.
        """
        self.check_known(stage)
        in_flight = self.stages[stage] in (StageState.RUNNING, StageState.RETRY_SCHEDULED) or (
            stage in self.ready_stages()
        )
        if self.attempts[stage] != attempt or not in_flight:
            raise TransitionError(f"stage {stage!r} attempt {attempt} is not in flight")
        if max_recoveries is not None and self.recoveries.get(stage, 0) >= max_recoveries:
            self._failed(stage=stage, classification=str(Classification.PERMANENT),
                         error=f"stuck: no outcome after {max_recoveries} recoveries", at=at)
            return
        self._recovered(stage=stage, attempt=attempt, at=at)

    class Recovered(Aggregate.Event):
        stage: str
        attempt: int
        at: datetime

    @event(Recovered)
    def _recovered(self, stage: str, attempt: int, at: datetime) -> None:
        self.attempts[stage] = attempt + 1
        self.stages[stage] = StageState.PENDING
        self.recoveries[stage] = self.recoveries.get(stage, 0) + 1

    def retry(self, by: str, at: datetime, correlation_id: str | None = None) -> None:
        """Manually retry a failed job from its failed stage with a fresh attempt budget."""
        if self.terminal is not Status.FAILED:
            self.check_not_terminal()
            raise TransitionError(f"only a FAILED job can be retried; job is {self.status}")
        self._retried(by=by, at=at, correlation_id=correlation_id)

    class Retried(Aggregate.Event):
        by: str
        at: datetime
        correlation_id: str | None

    @event(Retried)
    def _retried(self, by: str, at: datetime, correlation_id: str | None) -> None:
        self.terminal = None
        self.error = None
        for stage, state in self.stages.items():
            if state in (StageState.FAILED, StageState.RUNNING, StageState.WAITING):
                self.stages[stage] = StageState.PENDING
                self.attempts[stage] += 1
                self.failures[stage] = 0
        self.waits.clear()

    def cancel(
        self,
        reason: str,
        by: str,
        at: datetime,
        superseded_by: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.check_not_terminal()
        self._cancelled(reason=reason, by=by, at=at, superseded_by=superseded_by,
                        correlation_id=correlation_id)

    class Cancelled(Aggregate.Event):
        reason: str
        by: str
        at: datetime
        superseded_by: str | None
        correlation_id: str | None

    @event(Cancelled)
    def _cancelled(
        self,
        reason: str,
        by: str,
        at: datetime,
        superseded_by: str | None,
        correlation_id: str | None,
    ) -> None:
        self.terminal = Status.CANCELLED
        self.cancel_reason = reason

    class Completed(Aggregate.Event):
        at: datetime

    @event(Completed)
    def _completed(self, at: datetime) -> None:
        self.terminal = Status.COMPLETED

    class Failed(Aggregate.Event):
        stage: str
        classification: str
        error: str
        at: datetime

    @event(Failed)
    def _failed(self, stage: str, classification: str, error: str, at: datetime) -> None:
        self.terminal = Status.FAILED
        # The stage that failed the job is where a manual retry starts again.
        self.stages[stage] = StageState.FAILED
        self.error = {"stage": stage, "classification": classification, "error": error}

    # Guards -----------------------------------------------------------------

    def check_not_terminal(self) -> None:
        if self.terminal is not None:
            raise JobFinishedError(f"job {self.id} is {self.terminal} and accepts nothing")

    def check_known(self, stage: str) -> None:
        self.check_not_terminal()
        if stage not in self.stages:
            raise UnknownStageError(f"job {self.id} has no stage {stage!r}")

    def check_expects(self, stage: str, attempt: int) -> None:
        self.check_known(stage)
        if not self.expects(stage, attempt):
            raise TransitionError(
                f"stage {stage!r} attempt {attempt} is not runnable "
                f"(state {self.stages[stage]}, expected attempt {self.attempts[stage]})"
            )

    def check_running(self, stage: str, attempt: int) -> None:
        self.check_known(stage)
        if self.stages[stage] is not StageState.RUNNING or self.attempts[stage] != attempt:
            raise TransitionError(f"stage {stage!r} attempt {attempt} is not running")

    def check_waiting(self, stage: str) -> None:
        self.check_known(stage)
        if stage not in self.waits:
            raise TransitionError(f"stage {stage!r} is not waiting for an event")


class JobError(Exception):
    """Base of the job's domain errors."""


class TransitionError(JobError):
    """Raised when a command is not allowed in the job's current state; nothing is appended."""


class JobFinishedError(TransitionError):
    """Raised when a command is given to a job that has reached a terminal status."""


class UnknownStageError(TransitionError):
    """Raised when a command names a stage the job's workflow does not have."""
