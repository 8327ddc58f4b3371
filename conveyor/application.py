"""The command side: enqueue jobs and record what happens to them, in the event store."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import EnvType

from conveyor import attempts
from conveyor.aggregates import (
    Duplicate,
    Job,
    MigrationBlockedError,
    OutsideEvent,
    PullRequest,
    TransitionError,
    Trigger,
    decide_review,
    job_id_for,
    outside_event_id_for,
    pull_request_id_for,
    started_key,
)
from conveyor.attempts import HandlerResult, Outcome, StageRun
from conveyor.errors import ConveyorError
from conveyor.group_commit import GroupCommit
from conveyor.store import datastore_of, recorder
from conveyor.store.leases import Lease, LeaseStore
from conveyor.tenancy import parse_priority
from conveyor.workflows import WORKFLOWS, Workflow
from conveyor.workflows.code_review import ReviewInput
from conveyor.workflows.inputs import check_input

Clock = Callable[[], datetime]
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Enqueued:
    """The answer to an enqueue: the job's id, and whether this call created it."""

    job_id: UUID
    created: bool
    # The review this one cancelled as superseded, if one was still running.
    superseded: UUID | None = None


@dataclass(frozen=True)
class Moved:
    """What a migration did to one job: `outcome` is "migrated" (in a dry run: would be),
    "skipped" (finished, or no longer on that version) or "blocked", with why."""

    job_id: UUID
    outcome: str
    reason: str = ""


@dataclass(frozen=True)
class Decided(Generic[T]):
    """What one try of a command decided: the aggregates to save, and its answer once saved."""

    save: Sequence[Aggregate]
    answer: T


class Jobs(Application[UUID]):
    """Jobs, stored as events; every method takes and returns ids and plain values."""

    name = "Jobs"
    # Its recorder releases stage leases in the transaction that saves their outcomes.
    env = {"APPLICATION_RECORDER_TOPIC": recorder.TOPIC}
    # Optimistic-concurrency conflicts are retried by reloading this many times.
    max_conflicts = 20
    # Stage outcomes recorded within this many seconds of each other share one save.
    outcome_window = 0.002
    outcome_batch = 32

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        workflows: Mapping[str, Workflow] = WORKFLOWS,
        skip_stages: Mapping[str, frozenset[str]] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(env)
        self.workflows = workflows
        self.skip_stages = skip_stages or {}
        self.clock = clock
        self.outcomes: GroupCommit[StageRun, Outcome] = GroupCommit(
            self._record_outcomes, window=self.outcome_window, limit=self.outcome_batch,
            name="stage-outcomes")

    def close(self) -> None:
        self.outcomes.close()
        super().close()

    def enqueue(
        self,
        workflow: str,
        key: str,
        trigger: dict[str, Any],
        correlation_id: str | None = None,
        delivery: dict[str, Any] | None = None,
        *,
        organization: str | None = None,
        team: str | None = None,
        priority: int | None = None,
        traceparent: str | None = None,
    ) -> Enqueued:
        """Start a job for `key`, or return the job that key already started.

        `priority` (1 to 100) raises the job above its tenant's priority; a job of a
        tenant whose priority is higher still gets its tenant's. `traceparent` is the root
        span of the job's trace (`tracing.root_span`).
        """
        if priority is not None:
            parse_priority(priority)
        job = self._new_job(workflow, key, trigger, correlation_id, delivery,
                            organization=organization, team=team, priority=priority,
                            traceparent=traceparent)
        try:
            self.save(job)
        except IntegrityError:
            # The unique (originator_id, originator_version) refused a second
            # Enqueued: the same key was enqueued before (docs/architecture.md §2.2).
            return Enqueued(job_id_for(key), created=False)
        return Enqueued(job.id, created=True)

    def start(
        self,
        workflow: str,
        key: str,
        input: dict[str, Any],
        *,
        by: str,
        organization: str | None = None,
        allowed: frozenset[str] | None = None,
        correlation_id: str | None = None,
        priority: int | None = None,
        traceparent: str | None = None,
    ) -> Enqueued:
        """Start `workflow` with `input` under the caller's idempotency `key`, or return the
        job that key started; the API's start (docs/architecture.md §2.5).

        `priority` raises the job above its tenant's (as `enqueue`'s); `traceparent` is
        the request's root span (`http.traces.job_root`).

        `allowed` are the organisations of a token limited to them (None: any): the job
        is started in `organization`, which must be one of them (the only one when not
        given). The input is checked against the workflow's declared shape before
        anything is stored. A workflow whose input is a `ReviewInput` starts a review of
        the pull request it names, superseding its running one as a webhook's would.
        The same key with another input is refused (`InputConflictError`).
        """
        definition = self.workflow(workflow)
        organization = _organization(organization, allowed)
        check_input(definition.input, input)
        if priority is not None:
            parse_priority(priority)
        job_key = started_key(workflow, organization, key)
        if definition.input is ReviewInput:
            trigger = Trigger(
                platform=input["platform"], repository=input["repository"],
                pull_request=input["pull_request"], head_commit=input["head_commit"],
                base_branch=input.get("base_branch"), action="command", sender=by,
                delivery_id=None, url=input.get("url"), organization=organization,
                started_as=job_key)
            started = self.request_review(trigger, received_at=self.clock(), workflow=workflow,
                                          correlation_id=correlation_id, tenants=allowed,
                                          priority=priority, traceparent=traceparent)
        else:
            started = self.enqueue(workflow, job_key, input, correlation_id,
                                   organization=organization, priority=priority,
                                   traceparent=traceparent)
        if started.created:
            return started
        try:
            stored = self.get(started.job_id).trigger
        except JobNotFoundError:
            # Archived (docs/architecture.md §8.4): its key is taken, its input is in a file.
            return started
        if _changed(stored, input, review=definition.input is ReviewInput):
            raise InputConflictError(
                f"Key {key!r} already started job {started.job_id} with another input.")
        return started

    def check_start(self, workflow: str, input: dict[str, Any]) -> None:
        """Raise unless `workflow` is registered and accepts `input`, storing nothing."""
        check_input(self.workflow(workflow).input, input)

    def workflow(self, workflow: str) -> Workflow:
        """The registered workflow of that name; `UnknownWorkflowError` if there is none."""
        try:
            return self.workflows[workflow]
        except KeyError:
            raise UnknownWorkflowError(f"No workflow named {workflow!r}.") from None

    def _new_job(
        self,
        workflow: str,
        key: str,
        trigger: dict[str, Any],
        correlation_id: str | None,
        delivery: dict[str, Any] | None,
        *,
        organization: str | None,
        team: str | None,
        priority: int | None = None,
        traceparent: str | None = None,
    ) -> Job:
        definition = self.workflow(workflow)
        return Job(
            key=key,
            workflow=workflow,
            plan=definition.plan(self.skip_stages.get(workflow, frozenset())),
            workflow_version=definition.version,
            trigger=trigger,
            correlation_id=correlation_id,
            delivery=delivery,
            organization=organization,
            team=team,
            priority=priority,
            traceparent=traceparent,
        )

    def request_review(
        self,
        trigger: Trigger,
        *,
        received_at: datetime,
        workflow: str = "code_review",
        correlation_id: str | None = None,
        delivery: dict[str, Any] | None = None,
        traceparent: str | None = None,
        tenants: frozenset[str] | None = None,
        priority: int | None = None,
    ) -> Enqueued:
        """Start the review `trigger` asks for and cancel the pull request's older running one.

        Asked by a token limited to `tenants`, it cancels the older review only if that
        is of one of them: a tenant never cancels another's job.

        The pull request, the new job and the superseded job are saved in one transaction,
        so two racing deliveries for one pull request conflict on the pull request: the one
        the log records last is the live review, and the loser reloads and decides again.
        A key the pull request has seen before answers with its job, even a cancelled one,
        so a re-delivered old push never revives a superseded review.
        """
        pr_id = pull_request_id_for(trigger.platform, trigger.repository, trigger.pull_request)
        # A pull request's first delivery is its opening: assume it is new and skip the
        # read; if it was not, the save conflicts and the next try reads it as usual.
        assume_new = trigger.action == "opened"

        def decide(conflicted: bool) -> Decided[Enqueued]:
            pr = None if assume_new and not conflicted else self._pull_request(pr_id)
            decision = decide_review(pr, trigger)
            if isinstance(decision, Duplicate):
                return Decided((), Enqueued(decision.job_id, created=False))
            if conflicted and decision.job_id in self.repository:
                # Enqueued by `enqueue`, outside any pull request's record.
                return Decided((), Enqueued(decision.job_id, created=False))
            pr = pr or PullRequest(trigger.platform, trigger.repository, trigger.pull_request)
            at = self.clock()
            job = self._new_job(workflow, decision.key, decision.trigger.as_dict(received_at),
                                correlation_id, delivery, organization=trigger.organization,
                                team=trigger.team, traceparent=traceparent,
                                priority=priority)
            superseded = self._cancel_review(
                decision.supersedes, "superseded", trigger.sender or trigger.platform, at,
                correlation_id, superseded_by=job.id, tenants=tenants,
            )
            pr.request_review(job.id, decision.trigger.head_commit, trigger.action, at)
            return Decided(
                (pr, job, *([superseded] if superseded else [])),
                Enqueued(job.id, created=True, superseded=superseded.id if superseded else None),
            )

        return self._until_saved(f"pull request {pr_id}", decide)

    def close_pull_request(
        self,
        platform: str,
        repository: str,
        number: str,
        reason: str,
        by: str,
        correlation_id: str | None = None,
    ) -> UUID | None:
        """Record a closed or merged pull request; return the running review it cancelled.

        A pull request no review was ever requested for stores nothing.
        """
        if reason not in CLOSE_REASONS:
            raise UnknownCloseReasonError(f"a pull request is closed or merged, not {reason!r}")
        pr_id = pull_request_id_for(platform, repository, number)

        def decide(conflicted: bool) -> Decided[UUID | None]:
            pr = self._pull_request(pr_id)
            if pr is None or pr.closed is not None:
                return Decided((), None)
            at = self.clock()
            cancelled = self._cancel_review(pr.review, reason, by, at, correlation_id)
            pr.close(reason=reason, by=by, at=at)
            return Decided((pr, *([cancelled] if cancelled else [])),
                           cancelled.id if cancelled else None)

        return self._until_saved(f"pull request {pr_id}", decide)

    def _pull_request(self, pr_id: UUID) -> PullRequest | None:
        try:
            pr: PullRequest = self.repository.get(pr_id)
        except AggregateNotFoundError:
            return None
        return pr

    def _cancel_review(
        self,
        job_id: str | None,
        reason: str,
        by: str,
        at: datetime,
        correlation_id: str | None,
        superseded_by: UUID | None = None,
        tenants: frozenset[str] | None = None,
    ) -> Job | None:
        """The review `job_id` cancelled (not saved), or None when it is not running (or,
        with `tenants`, not of one of them)."""
        if job_id is None:
            return None
        try:
            job: Job = self.repository.get(UUID(job_id))
        except AggregateNotFoundError:
            return None
        if job.status.is_terminal or (tenants is not None and job.organization not in tenants):
            return None
        job.cancel(
            reason=reason,
            by=by,
            at=at,
            superseded_by=str(superseded_by) if superseded_by else None,
            correlation_id=correlation_id,
        )
        return job

    def get(self, job_id: UUID) -> Job:
        try:
            job: Job = self.repository.get(job_id)
        except AggregateNotFoundError:
            raise JobNotFoundError.of(job_id) from None
        return job

    def update(
        self, job_id: UUID, command: Callable[[Job], None], loaded: Job | None = None
    ) -> Job:
        """Apply `command` to the job and save; on a conflict, reload and decide again.

        `loaded`, a copy of the job the caller already read, saves the first read: if
        it has gone stale, its save conflicts and the job is read afresh.
        """

        def decide(conflicted: bool) -> Decided[Job]:
            job = self._job(job_id, loaded, conflicted)
            command(job)
            return Decided((job,), job)

        return self._until_saved(f"job {job_id}", decide)

    def _job(self, job_id: UUID, loaded: Job | None, conflicted: bool) -> Job:
        """The caller's copy of the job on a first try, else the job as stored."""
        return loaded if loaded is not None and not conflicted else self.get(job_id)

    def _until_saved(
        self,
        subject: str,
        decide: Callable[[bool], Decided[T]],
        *,
        conflicted: bool = False,
        release: Sequence[Lease] = (),
    ) -> T:
        """Decide and save; on a conflict, decide again on fresh reads. Every command's loop.

        `decide` reads what it needs, commands the aggregates and says which to save and
        what the command answers. It is told whether an earlier save conflicted, so a
        first try may skip a read (or use a copy it was given) and a retry does not.
        The `release` leases are deleted by the save that succeeds.
        """
        for _ in range(self.max_conflicts):
            decided = decide(conflicted)
            if not decided.save:
                return decided.answer
            try:
                self.save(*decided.save, release=release)
            except IntegrityError:
                conflicted = True
                continue
            return decided.answer
        raise ConflictError(f"{subject} kept changing under {self.max_conflicts} attempts")

    def cancel(
        self, job_id: UUID, reason: str, by: str, correlation_id: str | None = None
    ) -> None:
        self.update(job_id, lambda job: job.cancel(
            reason=reason, by=by, at=self.clock(), correlation_id=correlation_id))

    def retry(self, job_id: UUID, by: str, correlation_id: str | None = None) -> None:
        self.update(job_id, lambda job: job.retry(
            by=by, at=self.clock(), correlation_id=correlation_id))

    def record_stage_outcome(
        self,
        job_id: UUID,
        stage: str,
        attempt: int,
        started_at: datetime,
        result: HandlerResult,
        *,
        loaded: Job | None = None,
    ) -> Outcome:
        """Record a stage attempt's start and what its handler did, and drop its lease.

        The start, the outcome and the lease's release are one transaction, shared with
        the outcomes this process's other threads record at the same moment (group
        commit). A failure is classified and retried or not as the stage's policy says.
        If the job was cancelled, recovered or finished by a racing copy while the
        handler ran, the first outcome in the log stands and this one is dropped
        (`DISCARDED`); its lease is released all the same.
        """
        return self.outcomes.submit(StageRun(job_id, stage, attempt, started_at, result, loaded))

    def _record_outcomes(self, runs: Sequence[StageRun]) -> list[Outcome | Exception]:
        """Record the runs' outcomes in one save; if it conflicts, each on its own.

        A version conflict of one job must not lose the others' outcomes, so the save
        that conflicts is tried again run by run, each on a fresh read of its job. A run
        whose job already is in the save (a parallel branch) goes after it, on a fresh
        read too: its copy of the job is stale by then.
        """
        answers: dict[int, Outcome | Exception] = {}
        batch: dict[UUID, tuple[int, Job]] = {}
        for i, run in enumerate(runs):
            if run.job_id in batch:
                continue
            try:
                job = self._job(run.job_id, run.loaded, conflicted=False)
                answers[i] = self._decide_outcome(job, run)
            except TransitionError:
                answers[i] = self._discard(run)
            except Exception as error:
                answers[i] = error
            else:
                batch[run.job_id] = (i, job)
        try:
            self.save(*(job for _, job in batch.values()),
                      release=[runs[i].lease for i, _ in batch.values()])
        except IntegrityError:
            for i, _ in batch.values():
                answers[i] = self._record_alone(runs[i], conflicted=True)
        for i, run in enumerate(runs):
            if i not in answers:
                answers[i] = self._record_alone(run, conflicted=True)
        return [answers[i] for i in range(len(runs))]

    def _record_alone(self, run: StageRun, *, conflicted: bool) -> Outcome | Exception:
        def decide(conflicted: bool) -> Decided[Outcome]:
            job = self._job(run.job_id, run.loaded, conflicted)
            return Decided((job,), self._decide_outcome(job, run))

        try:
            return self._until_saved(f"job {run.job_id}", decide, conflicted=conflicted,
                                     release=[run.lease])
        except TransitionError:
            return self._discard(run)
        except Exception as error:
            return error

    def _decide_outcome(self, job: Job, run: StageRun) -> Outcome:
        return attempts.record(job, self.workflows[job.workflow][run.stage], run.attempt,
                               run.started_at, run.result, now=self.clock())

    def _discard(self, run: StageRun) -> Outcome | Exception:
        try:
            # A save of no events still runs the recorder's transaction, which releases.
            self.save(release=[run.lease])
        except Exception as error:  # the lease stays for the relay, which finds it moot
            return error
        return Outcome.DISCARDED

    def migrate(self, job_id: UUID, workflow: str, from_version: str, *,
                dry_run: bool = False) -> Moved:
        """Move a job of `workflow` v`from_version` onto the workflow's version in this code,
        as its declared migration says (docs/architecture.md §3.9); `NoMigrationError` if
        it declares none from that version.

        A job that finished, or is not on `from_version` (moved already), is skipped; one
        with a stage running (a live lease) is blocked, and moves on a later call. A
        conflict with an outcome recorded meanwhile decides again on the job as it is then.
        """
        definition = self.workflow(workflow)
        renamed = definition.migration_from(from_version)
        plan = definition.plan(self.skip_stages.get(workflow, frozenset()))
        leases = LeaseStore(datastore_of(self))

        def decide(conflicted: bool) -> Decided[Moved]:
            job = self.get(job_id)
            if (job.terminal is not None or job.workflow != workflow
                    or job.workflow_version != from_version):
                return Decided((), Moved(job_id, "skipped", f"{job.workflow}"
                                         f" v{job.workflow_version}, {job.status}"))
            running = [lease.stage for lease in leases.live(job_id, self.clock())
                       if lease.stage in job.runs and job.runs[lease.stage].attempt
                       == lease.attempt]
            try:
                if running:
                    raise MigrationBlockedError(f"stage {running[0]!r} is running")
                job.migrate(definition.version, plan, renamed, at=self.clock())
            except MigrationBlockedError as blocked:
                return Decided((), Moved(job_id, "blocked", str(blocked)))
            return Decided(() if dry_run else (job,), Moved(job_id, "migrated"))

        return self._until_saved(f"job {job_id}", decide)

    def resume_wait(
        self, job_id: UUID, stage: str, attempt: int, event_id: str, payload: Any,
        traceparent: str | None = None,
    ) -> None:
        """Resume the job's wait at `stage` with an outside event; refused if it ended.

        `traceparent` is the event's own trace, which the wait's span links to.
        """

        def resume(job: Job) -> None:
            now = job.follow(stage)  # a migration may have renamed it since it paused
            job.check_wait(now, attempt)
            job.resume(now, event_id, payload, traceparent)

        self.update(job_id, resume)

    def time_out_wait(self, job_id: UUID, stage: str, attempt: int, at: datetime) -> None:
        """Apply the wait's on-timeout policy; refused if the wait ended first."""

        def time_out(job: Job) -> None:
            now = job.follow(stage)
            job.check_wait(now, attempt)
            job.time_out_wait(now, at=at)

        self.update(job_id, time_out)

    def recover_stage(
        self, job_id: UUID, stage: str, attempt: int, at: datetime, max_recoveries: int
    ) -> str | None:
        """Dispatch again an attempt whose worker vanished; refused if its outcome is in.

        Returns the job's organisation, for the relay's log line.
        """
        return self.update(job_id, lambda job: job.recover(
            stage, attempt, at=at, max_recoveries=max_recoveries)).organization

    def redispatch_stage(
        self, job_id: UUID, stage: str, attempt: int, at: datetime, max_redispatches: int
    ) -> str | None:
        """Give up an attempt whose message never reached a worker, for the next one; refused
        if it started meanwhile. Returns the job's organisation, for the relay's log line."""
        return self.update(job_id, lambda job: job.redispatch(
            stage, attempt, at=at, max_redispatches=max_redispatches)).organization

    def record_outside_event(
        self,
        event_id: str,
        event_type: str,
        key: str,
        payload: Any,
        source: str,
        correlation_id: str | None = None,
        organizations: frozenset[str] | None = None,
        traceparent: str | None = None,
    ) -> Enqueued:
        """Store an outside event once; a repeat of its id is answered with `created=False`.

        `organizations` are those of the token that sent it (None: every organisation):
        the event resumes only their waits, and its id is theirs alone
        (docs/architecture.md §5.2).
        """
        orgs = None if organizations is None else sorted(organizations)
        received = OutsideEvent(event_id=event_id, event_type=event_type, key=key,
                                payload=payload, source=source, correlation_id=correlation_id,
                                organizations=orgs, traceparent=traceparent)
        try:
            self.save(received)
        except IntegrityError:
            return Enqueued(outside_event_id_for(event_id, orgs), created=False)
        return Enqueued(received.id, created=True)


CLOSE_REASONS = frozenset({"closed", "merged"})


def _changed(stored: dict[str, Any], submitted: dict[str, Any], *, review: bool) -> bool:
    """Whether a start's input differs from the one its key started the job with.

    A review's stored trigger adds fields of its own (action, sender, times): only the
    input's are compared.
    """
    if not review:
        return stored != submitted
    return any(stored.get(name) != submitted.get(name) for name in ReviewInput.__annotations__)


def _organization(organization: str | None, allowed: frozenset[str] | None) -> str | None:
    """The organisation a job is started in, as the asking token's limits allow."""
    if allowed is None:
        return organization
    if organization is None:
        if len(allowed) == 1:
            return next(iter(allowed))
        raise OrganizationRequiredError(
            "'organization' is required: the token is limited to several organisations.")
    if organization not in allowed:
        # As a list naming another organisation finds nothing (docs/architecture.md §9.1).
        raise OrganizationNotFoundError(f"No organization {organization!r}.")
    return organization


class JobsError(ConveyorError):
    """Base of the command side's errors."""


class JobNotFoundError(JobsError):
    """Raised when a command names a job id the event store does not hold, or (through the
    API) a job of an organisation the asking token is not limited to."""

    @classmethod
    def of(cls, job_id: UUID) -> JobNotFoundError:
        """The error for `job_id`: one wording wherever it is raised, so an answer about
        another organisation's job reads exactly as one about a job that is not there."""
        return cls(f"No job {job_id}.")


class UnknownWorkflowError(JobsError):
    """Raised when a job is enqueued for a workflow that is not registered."""


class InputConflictError(JobsError):
    """Raised when a job is started with an idempotency key that already started one with
    another input; nothing is stored."""


class OrganizationRequiredError(JobsError):
    """Raised when a token limited to several organisations starts a job naming none."""


class OrganizationNotFoundError(JobsError):
    """Raised when a token limited to organisations starts a job in another one (answered
    as a 404, as a list naming another organisation finds nothing)."""


class UnknownCloseReasonError(JobsError):
    """Raised when a pull request is said to be closed for a reason other than closed or merged."""


class ConflictError(JobsError):
    """Raised when a job changed under every one of a command's reload-and-retry attempts."""
