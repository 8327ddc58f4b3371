"""The Job aggregate: one run of a workflow for one trigger, and the state machine it obeys."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from conveyor.aggregates.stages import (
    ACTIVE,
    Attempt,
    AttemptOutcome,
    Classification,
    Deferral,
    OnTimeout,
    PlanStep,
    StageRun,
    StageState,
    Status,
    Wait,
    Woken,
    carried,
    ready_stages,
)
from conveyor.errors import ConveyorError

# Job ids are UUIDv5 of the idempotency key in this namespace, so the same key
# always names the same aggregate (docs/architecture.md §2.2).
JOB_NAMESPACE = uuid.UUID("6f1c2d1e-9c55-4a52-9a7e-1c0e5b9f3a10")


def job_id_for(key: str) -> uuid.UUID:
    """The deterministic id of the job enqueued under `key`."""
    return uuid.uuid5(JOB_NAMESPACE, key)


def started_key(workflow: str, organization: str | None, key: str) -> str:
    """The idempotency key of a job started through the API with the caller's `key`.

    Of the workflow and the organisation too, so two tenants' (or workflows') equal keys
    name different jobs; prefixed so it never equals a webhook's `platform:...` key, and
    JSON-quoted so no choice of parts can spell another's.
    """
    return "api:" + json.dumps([workflow, organization, key], separators=(",", ":"))


class Job(Aggregate):
    """A workflow run whose every change is an event; commands refuse what the state forbids.

    The job's state is one `StageRun` per stage and the log of its attempts. Every read
    model is derived from this state (see `conveyor.projections.rows`), so the rules of
    the state machine live here and nowhere else.
    """

    @staticmethod
    def create_id(key: str) -> uuid.UUID:
        return job_id_for(key)

    class Enqueued(Aggregate.Created):
        """The job was asked for; version 2 added its tenant (`organization`, `team`),
        version 3 the job's own `priority` (above its tenant's), version 4 the W3C
        `traceparent` of the request that asked (its trace's root), version 5 the
        `workflow_version` it runs on to the end (docs/architecture.md §3.9)."""

        class_version = 5

        key: str
        workflow: str
        plan: list[PlanStep]
        trigger: dict[str, Any]
        correlation_id: str | None
        delivery: dict[str, Any] | None
        organization: str | None
        team: str | None
        priority: int | None
        traceparent: str | None
        workflow_version: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Jobs enqueued before tenants existed belong to no organisation.
            state["organization"] = None
            state["team"] = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            # Jobs enqueued before priorities take their tenant's.
            state["priority"] = None

        @staticmethod
        def upcast_v3_v4(state: dict[str, Any]) -> None:
            # Jobs enqueued before traces have none: their work stays untraced.
            state["traceparent"] = None

        @staticmethod
        def upcast_v4_v5(state: dict[str, Any]) -> None:
            # Jobs enqueued before versions have none: any worker with their workflow runs
            # them, from the unversioned queue, as before versions (§3.9).
            state["workflow_version"] = None

    @event(Enqueued)
    def __init__(
        self,
        key: str,
        workflow: str,
        plan: list[PlanStep],
        trigger: dict[str, Any],
        correlation_id: str | None = None,
        delivery: dict[str, Any] | None = None,
        organization: str | None = None,
        team: str | None = None,
        priority: int | None = None,
        traceparent: str | None = None,
        workflow_version: str | None = None,
    ) -> None:
        # `delivery` keeps the raw request (compressed) for audit and replay; the
        # job itself never reads it.
        self.key = key
        self.workflow = workflow
        # The tenant the job belongs to (docs/architecture.md §2.4): the platform's
        # organisation, workspace or top-level namespace, and a team below it where the
        # platform has one. None for jobs enqueued before tenants, or without a delivery.
        self.organization = organization
        self.team = team
        # Raised above its tenant's priority for this job alone; None: the tenant's
        # (docs/architecture.md §3.7).
        self.priority = priority
        # The plan is the workflow's shape at enqueue time: [{"stage", "after"}, ...].
        # Keeping it in the event makes the job replayable whatever the code becomes.
        self.plan = plan
        # The workflow's version (its full graph's, whatever stages were skipped) the job runs
        # on to the end; its stages go to that version's workers alone (docs/architecture.md
        # §3.9). None: enqueued before versions, run by any worker with the workflow.
        self.workflow_version = workflow_version
        # Each stage a migration renamed, by its old name: an event or a timer that names
        # the old stage still finds it (`follow`).
        self.renamed: dict[str, str] = {}
        self.trigger = trigger
        self.correlation_id = correlation_id
        # The root span of the job's trace (docs/architecture.md §13), passed to every
        # process that works on it; None when it was enqueued untraced.
        self.traceparent = traceparent
        self.runs: dict[str, StageRun] = {s["stage"]: StageRun() for s in plan}
        self.attempt_log: list[Attempt] = []
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.terminal: Status | None = None
        # What ended the job (None while it runs or after it completed) ...
        self.error: dict[str, Any] | None = None
        # ... and the latest error a person should see, a retried failure's included.
        self.last_error: dict[str, Any] | None = None
        self.cancel_reason: str | None = None
        # The outside events that resumed its waits: one event resumes one wait of a job,
        # the first in the log (docs/architecture.md §5.3).
        self.resumed_by: set[str] = set()

    # Queries ----------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self.started_at is not None

    @property
    def status(self) -> Status:
        """The job's status, derived from its stages' states."""
        if self.terminal is not None:
            return self.terminal
        if not self.started:
            return Status.PENDING
        states = {run.state for run in self.runs.values()}
        # A stage deferred by a rate limit is queued work, not a wait for anything outside.
        if self.ready_stages() or states & {StageState.RUNNING, StageState.DEFERRED}:
            return Status.PROCESSING
        if StageState.WAITING in states:
            return Status.WAITING_FOR_EVENT
        if StageState.RETRY_SCHEDULED in states:
            return Status.RETRYING
        return Status.PROCESSING

    @property
    def outputs(self) -> dict[str, Any]:
        """What each finished stage returned, for the stages after it."""
        return {s: run.output for s, run in self.runs.items() if run.state is StageState.DONE}

    @property
    def result(self) -> Any:
        """The job's answer once COMPLETED: what its plan's last stage returned; else None."""
        if self.terminal is not Status.COMPLETED:
            return None
        return self.runs[self.plan[-1]["stage"]].output

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
        return ready_stages(self.plan, self.runs)

    def current_stages(self) -> list[str]:
        """The stages ready to run or in flight (running, waiting, retrying), in plan order."""
        if self.terminal is not None:
            return []
        ready = set(self.ready_stages())
        return [s["stage"] for s in self.plan
                if s["stage"] in ready or self.runs[s["stage"]].state in ACTIVE]

    def follow(self, stage: str) -> str:
        """The name `stage` has now: its new one if a migration renamed it."""
        return stage if stage in self.runs else self.renamed.get(stage, stage)

    def open_attempt(self, stage: str) -> Attempt | None:
        """The stage's attempt that started and has not ended, if any."""
        for entry in reversed(self.attempt_log):
            if entry.stage == stage:
                return entry if entry.outcome is AttemptOutcome.RUNNING else None
        return None

    def expects(self, stage: str, attempt: int) -> bool:
        """Whether a `run_stage(stage, attempt)` message should do any work now."""
        if self.terminal is not None or stage not in self.runs:
            return False
        run = self.runs[stage]
        if run.attempt != attempt:
            return False
        if run.state in (StageState.RETRY_SCHEDULED, StageState.DEFERRED):
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
        self.started_at = self.started_at or at
        self._set(stage, state=StageState.RUNNING, retry_at=None, deferral=None)
        self.attempt_log.append(Attempt(stage, attempt, self.version + 1, at))

    def complete_stage(self, stage: str, attempt: int, output: Any, at: datetime) -> None:
        self.check_running(stage, attempt)
        self._stage_completed(stage=stage, attempt=attempt, output=output, at=at)
        if all(run.state is StageState.DONE for run in self.runs.values()):
            self._completed(at=at)

    class StageCompleted(Aggregate.Event):
        stage: str
        attempt: int
        output: Any
        at: datetime

    @event(StageCompleted)
    def _stage_completed(self, stage: str, attempt: int, output: Any, at: datetime) -> None:
        self._set(stage, state=StageState.DONE, output=output)
        self._end_attempt(stage, AttemptOutcome.COMPLETED, at)

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
        run = self.runs[stage]
        if retry_at is None:
            self._set(stage, state=StageState.FAILED, failures=run.failures + 1)
        else:
            self._set(stage, state=StageState.RETRY_SCHEDULED, failures=run.failures + 1,
                      attempt=attempt + 1, retry_at=retry_at, retries=run.retries + 1)
        self.last_error = {"stage": stage, "classification": classification, "error": error}
        outcome = AttemptOutcome.FAILED if retry_at is None else AttemptOutcome.RETRY_SCHEDULED
        self._end_attempt(stage, outcome, at, classification=classification, error=error)

    def pause(
        self,
        stage: str,
        attempt: int,
        event_type: str,
        key: str,
        deadline: datetime,
        at: datetime,
        on_timeout: str = OnTimeout.FAIL,
        request: dict[str, Any] | None = None,
    ) -> None:
        """Wait for an outside event; `request`, if given, is published by the relay."""
        self.check_running(stage, attempt)
        if on_timeout not in OnTimeout.__members__.values():
            raise TransitionError(f"on_timeout must be one of {[str(o) for o in OnTimeout]}")
        self._paused(stage=stage, attempt=attempt, event_type=event_type, key=key,
                     deadline=deadline, at=at, on_timeout=str(on_timeout), request=request)

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
        wait = Wait(event_type=event_type, key=key, deadline=deadline, attempt=attempt,
                    on_timeout=OnTimeout(on_timeout))
        self._set(stage, state=StageState.WAITING, wait=wait)
        self._end_attempt(stage, AttemptOutcome.PAUSED, at)

    def defer(self, stage: str, attempt: int, resource: str, until: datetime, at: datetime
              ) -> None:
        """Hold the attempt back until `until`, when its tenant's `resource` allows it.

        Refused unless the attempt is about to run (its tokens are taken before it
        starts) or running (its service answered "too many requests"). The attempt is
        not spent: the same attempt is dispatched again at `until`.
        """
        self.check_known(stage)
        run = self.runs[stage]
        if not (run.state is StageState.RUNNING and run.attempt == attempt):
            self.check_expects(stage, attempt)
        if not resource:
            raise TransitionError("a deferral names the resource it waits for")
        self._stage_deferred(stage=stage, attempt=attempt, resource=resource, until=until, at=at)

    class StageDeferred(Aggregate.Event):
        stage: str
        attempt: int
        resource: str
        until: datetime
        at: datetime

    @event(StageDeferred)
    def _stage_deferred(
        self, stage: str, attempt: int, resource: str, until: datetime, at: datetime
    ) -> None:
        self._set(stage, state=StageState.DEFERRED, retry_at=None,
                  deferral=Deferral(resource=resource, until=until))
        self._end_attempt(stage, AttemptOutcome.DEFERRED, at)

    def resume(self, stage: str, event_id: str, payload: Any,
               traceparent: str | None = None) -> None:
        """Resume the wait at `stage` with an outside event (and the event's own trace);
        refused if that event resumed one of the job's waits already."""
        self.check_waiting(stage)
        if event_id in self.resumed_by:
            raise TransitionError(f"event {event_id!r} resumed a wait of job {self.id} already")
        self._resumed(stage=stage, event_id=event_id, payload=payload, traceparent=traceparent)

    class Resumed(Aggregate.Event):
        """The wait ended with an outside event; version 2 added the event's `traceparent`,
        which the wait's span links to."""

        class_version = 2

        stage: str
        event_id: str
        payload: Any
        traceparent: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["traceparent"] = None

    @event(Resumed)
    def _resumed(self, stage: str, event_id: str, payload: Any,
                 traceparent: str | None) -> None:
        self._set(stage, state=StageState.PENDING, wait=None, resumed_with=payload,
                  woken=Woken.RESUMED)
        self.resumed_by.add(event_id)

    def time_out_wait(self, stage: str, *, at: datetime, fail_job: bool | None = None) -> None:
        """The wait's deadline passed: fail the job, or let the stage continue without the event.

        Which one is the wait's `on_timeout` policy unless `fail_job` says otherwise.
        """
        self.check_waiting(stage)
        wait = self.runs[stage].wait
        if fail_job is None:
            fail_job = wait is not None and wait["on_timeout"] is OnTimeout.FAIL
        self._wait_timed_out(stage=stage, at=at)
        if fail_job:
            self._failed(stage=stage, classification=str(Classification.PERMANENT),
                         error="wait_timed_out", at=at)

    class WaitTimedOut(Aggregate.Event):
        stage: str
        at: datetime

    @event(WaitTimedOut)
    def _wait_timed_out(self, stage: str, at: datetime) -> None:
        self._set(stage, state=StageState.PENDING, wait=None, resumed_with=None,
                  woken=Woken.TIMED_OUT)

    def recover(
        self, stage: str, attempt: int, at: datetime, max_recoveries: int | None = None
    ) -> None:
        """Dispatch a stage again whose worker vanished; the lost attempt's outcome is refused.

        After `max_recoveries` recoveries of one stage, the job fails as stuck instead.
        """
        self.check_known(stage)
        run = self.runs[stage]
        in_flight = run.state in (StageState.RUNNING, StageState.RETRY_SCHEDULED,
                                  StageState.DEFERRED) or (
            stage in self.ready_stages()
        )
        if run.attempt != attempt or not in_flight:
            raise TransitionError(f"stage {stage!r} attempt {attempt} is not in flight")
        if max_recoveries is not None and run.recoveries >= max_recoveries:
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
        self._set(stage, state=StageState.PENDING, attempt=attempt + 1, retry_at=None,
                  deferral=None, recoveries=self.runs[stage].recoveries + 1)
        self._end_attempt(stage, AttemptOutcome.RECOVERED, at)

    def redispatch(
        self, stage: str, attempt: int, at: datetime, max_redispatches: int | None = None
    ) -> None:
        """Dispatch again an attempt that was sent long ago and never started: its message was
        lost (dead-lettered after an outage), so nothing else would ever run the stage.

        The attempt is given up for the next one, so a late copy of the lost message is
        refused. After `max_redispatches` of one stage the job fails as lost instead.
        """
        self.check_expects(stage, attempt)
        if max_redispatches is not None and self.runs[stage].redispatches >= max_redispatches:
            self._failed(stage=stage, classification=str(Classification.PERMANENT),
                         error=f"lost: never started after {max_redispatches} re-dispatches",
                         at=at)
            return
        self._stage_redispatched(stage=stage, attempt=attempt, at=at)

    class StageRedispatched(Aggregate.Event):
        """A ready attempt whose message never reached a worker was given up; its stage is
        ready again as the next attempt (docs/architecture.md §4.3)."""

        stage: str
        attempt: int
        at: datetime

    @event(StageRedispatched)
    def _stage_redispatched(self, stage: str, attempt: int, at: datetime) -> None:
        self._set(stage, state=StageState.PENDING, attempt=attempt + 1, retry_at=None,
                  deferral=None, redispatches=self.runs[stage].redispatches + 1)

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
        self.last_error = None
        self.finished_at = None
        # A deferred branch's timer may have fired while the job was failed: run it afresh.
        again = (StageState.FAILED, StageState.RUNNING, StageState.WAITING, StageState.DEFERRED)
        for stage, run in self.runs.items():
            if run.state in again:
                self._set(stage, state=StageState.PENDING, attempt=run.attempt + 1, failures=0,
                          wait=None, deferral=None)
        self._end_open_attempts(AttemptOutcome.ABANDONED, at)

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
        self._finish(Status.CANCELLED, at)
        self.cancel_reason = reason
        self.last_error = {"stage": None, "classification": str(Classification.CANCELLED),
                           "error": reason, "by": by}
        self._end_open_attempts(AttemptOutcome.CANCELLED, at)

    def migrate(self, version: str, plan: list[PlanStep], renamed: Mapping[str, str],
                at: datetime) -> None:
        """Move the job onto `version` of its workflow, whose graph is `plan`.

        `renamed` maps old stage names to new ones; a stage the new graph lacks is dropped
        if it is done or pending and blocks the move otherwise; a stage new in the graph
        starts pending; a running stage blocks it. A stage that may have been sent to the
        old version's workers (ready, or due again) is pending again with a fresh attempt,
        so an old worker's late report of the old attempt is refused (§3.9).
        """
        self.check_not_terminal()
        if version == self.workflow_version:
            raise TransitionError(f"job {self.id} already runs on version {version}")
        moves = {old: new for old, new in renamed.items() if old in self.runs and old != new}
        carry = carried(self.runs, plan, moves)
        for stage, run in self.runs.items():
            if run.state is StageState.RUNNING:
                raise MigrationBlockedError(f"stage {stage!r} is running")
            if stage not in carry.values() and run.state not in (StageState.DONE,
                                                                 StageState.PENDING):
                raise MigrationBlockedError(f"stage {stage!r} is {run.state} and version"
                                            f" {version} has no stage for it")
        self._migrated(from_version=self.workflow_version, to_version=version, renamed=moves,
                       plan=plan, at=at)
        if all(run.state is StageState.DONE for run in self.runs.values()):
            self._completed(at=at)

    class Migrated(Aggregate.Event):
        """The job moved onto another version of its workflow: its plan is the new graph's,
        and `renamed` stages keep their state under their new names."""

        from_version: str | None
        to_version: str
        renamed: dict[str, str]
        plan: list[PlanStep]
        at: datetime

    @event(Migrated)
    def _migrated(self, from_version: str | None, to_version: str, renamed: dict[str, str],
                  plan: list[PlanStep], at: datetime) -> None:
        carry = carried(self.runs, plan, renamed)
        sent = set(self.ready_stages())
        runs: dict[str, StageRun] = {}
        for step in plan:
            old = carry.get(step["stage"])
            run = StageRun() if old is None else self.runs[old]
            if old in sent or run.state in (StageState.RETRY_SCHEDULED, StageState.DEFERRED):
                run = replace(run, state=StageState.PENDING, attempt=run.attempt + 1,
                              retry_at=None, deferral=None)
            runs[step["stage"]] = run
        self.plan = plan
        self.runs = runs
        self.workflow_version = to_version
        self.renamed = {old: renamed.get(new, new) for old, new in self.renamed.items()}
        self.renamed.update(renamed)

    class Completed(Aggregate.Event):
        at: datetime

    @event(Completed)
    def _completed(self, at: datetime) -> None:
        self._finish(Status.COMPLETED, at)
        self.last_error = None

    class Failed(Aggregate.Event):
        stage: str
        classification: str
        error: str
        at: datetime

    @event(Failed)
    def _failed(self, stage: str, classification: str, error: str, at: datetime) -> None:
        self._finish(Status.FAILED, at)
        # The stage that failed the job is where a manual retry starts again.
        self._set(stage, state=StageState.FAILED, wait=None)
        self.error = {"stage": stage, "classification": classification, "error": error}
        self.last_error = self.error
        # A stuck stage's attempt never reported; it ends with the job.
        self._end_attempt(stage, AttemptOutcome.FAILED, at, classification=classification,
                          error=error)

    # State changes, for the mutators above only --------------------------------

    def _set(self, stage: str, **changes: Any) -> None:
        self.runs[stage] = replace(self.runs[stage], **changes)

    def _finish(self, status: Status, at: datetime) -> None:
        self.terminal = status
        self.finished_at = at

    def _end_attempt(self, stage: str, outcome: AttemptOutcome, at: datetime, **extra: Any) -> None:
        for i in range(len(self.attempt_log) - 1, -1, -1):
            entry = self.attempt_log[i]
            if entry.stage == stage:
                if entry.outcome is AttemptOutcome.RUNNING:
                    self.attempt_log[i] = replace(entry, outcome=outcome, finished_at=at,
                                                  ended_version=self.version + 1, **extra)
                return

    def _end_open_attempts(self, outcome: AttemptOutcome, at: datetime) -> None:
        for i, entry in enumerate(self.attempt_log):
            if entry.outcome is AttemptOutcome.RUNNING:
                self.attempt_log[i] = replace(entry, outcome=outcome, finished_at=at,
                                              ended_version=self.version + 1)

    # Guards -----------------------------------------------------------------

    def check_not_terminal(self) -> None:
        if self.terminal is not None:
            raise JobFinishedError(f"job {self.id} is {self.terminal} and accepts nothing")

    def check_known(self, stage: str) -> None:
        self.check_not_terminal()
        if stage not in self.runs:
            raise UnknownStageError(f"job {self.id} has no stage {stage!r}")

    def check_expects(self, stage: str, attempt: int) -> None:
        self.check_known(stage)
        if not self.expects(stage, attempt):
            run = self.runs[stage]
            raise TransitionError(
                f"stage {stage!r} attempt {attempt} is not runnable "
                f"(state {run.state}, expected attempt {run.attempt})"
            )

    def check_running(self, stage: str, attempt: int) -> None:
        self.check_known(stage)
        run = self.runs[stage]
        if run.state is not StageState.RUNNING or run.attempt != attempt:
            raise TransitionError(f"stage {stage!r} attempt {attempt} is not running")

    def check_waiting(self, stage: str) -> None:
        self.check_known(stage)
        if self.runs[stage].wait is None:
            raise TransitionError(f"stage {stage!r} is not waiting for an event")

    def check_wait(self, stage: str, attempt: int) -> None:
        """Refuse to act on a wait that has since ended or been replaced by a later one."""
        self.check_not_terminal()
        run = self.runs.get(stage)
        wait = run.wait if run is not None else None
        if wait is None or wait["attempt"] != attempt:
            raise TransitionError(f"job {self.id} no longer waits at {stage!r} attempt {attempt}")


class JobError(ConveyorError):
    """Base of the job's domain errors."""


class TransitionError(JobError):
    """Raised when a command is not allowed in the job's current state; nothing is appended."""


class JobFinishedError(TransitionError):
    """Raised when a command is given to a job that has reached a terminal status."""


class UnknownStageError(TransitionError):
    """Raised when a command names a stage the job's workflow does not have."""


class MigrationBlockedError(TransitionError):
    """Raised when a job cannot move onto another version now: a stage of it is running, or
    is in flight with no stage of the new version to move to."""
