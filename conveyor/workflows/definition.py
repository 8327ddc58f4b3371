"""How a workflow is declared: named stages, their order, their retry policy and time limit."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from conveyor.aggregates.stages import OnTimeout, PlanStep, Woken, plan_version
from conveyor.errors import ConveyorError
from conveyor.tenancy import RATE_NAME


@dataclass(frozen=True)
class RetryPolicy:
    """When a retryable failure is tried again; defaults are those of docs/architecture.md §6."""

    attempts: int = 3
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.25
    never_retry: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.initial_delay < 0 or self.multiplier < 1:
            raise WorkflowError(f"invalid retry policy: {self}")
        if not 0 <= self.jitter < 1 or self.max_delay < self.initial_delay:
            raise WorkflowError(f"invalid retry policy: {self}")

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait after the `failures`-th failure, or None when attempts are spent."""
        if failures < 1:
            raise WorkflowError(f"failures counts from 1, not {failures}")
        if failures >= self.attempts:
            return None
        base = self.initial_delay * self.multiplier ** (failures - 1)
        # Jitter spreads retries that failed together; the cap holds after it.
        return min(base * (1 + self.jitter * (2 * rand() - 1)), self.max_delay)


@dataclass(frozen=True)
class StageContext:
    """What a stage handler is told: its job's trigger and what earlier stages produced."""

    job_id: UUID
    stage: str
    attempt: int
    trigger: Mapping[str, Any]
    outputs: Mapping[str, Any]
    resumed_with: Any = None
    # Why the stage runs again after a pause: resumed (by an outside event, whose
    # payload is `resumed_with`) or timed out; None on a first run.
    woken: Woken | None = None

    @property
    def input(self) -> Mapping[str, Any]:
        """What the job was started with: the `input` of `POST /workflow-queue/jobs`, or the
        normalised trigger of the webhook delivery that started it."""
        return self.trigger


@dataclass(frozen=True)
class Pause:
    """Returned by a handler to free its worker until an outside event `(event_type, key)`.

    The stage runs again when the event arrives (told its payload), or when `timeout`
    passes, as `on_timeout` says: "fail" the job, or "continue" without the event.
    `request`, if given, is an outside event the relay publishes once the pause is stored.
    """

    event_type: str
    key: str
    timeout: float
    on_timeout: OnTimeout = OnTimeout.FAIL
    request: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.on_timeout not in OnTimeout.__members__.values():
            raise WorkflowError(f"on_timeout must be 'fail' or 'continue', not {self.on_timeout!r}")
        if self.timeout <= 0:
            raise WorkflowError(f"a pause needs a positive timeout, not {self.timeout}")


Handler = Callable[[StageContext], Any]
# How much of a rate-limited resource one run of a stage uses: a number, or a function of
# the stage's context that estimates it (an LLM prompt's tokens, say).
Amount = int | float | Callable[[StageContext], float]


@dataclass(frozen=True)
class Stage:
    """One unit of work: a plain callable, run by a worker, whose return value is its output.

    `uses` names the rate-limited resources one run consumes (docs/architecture.md §4.5).
    """

    name: str
    handler: Handler
    after: tuple[str, ...]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    time_limit: float = 300.0
    uses: Mapping[str, Amount] = field(default_factory=dict)

    def amounts(self, context: StageContext) -> dict[str, float]:
        """What this run uses of each resource, its estimates computed; zero amounts left out."""
        used: dict[str, float] = {}
        for resource, amount in self.uses.items():
            value = amount(context) if callable(amount) else amount
            if not _is_amount(value):
                raise WorkflowError(f"stage {self.name!r} estimated {value!r} of {resource!r};"
                                    " an amount is a finite number, 0 or more")
            if value:
                used[resource] = float(value)
        return used


class Workflow:
    """A named set of stages; each runs after those it names, else after the one before it.

    `input`, a dataclass or TypedDict, is the shape a job started through the API must
    submit (`conveyor.workflows.inputs`); None accepts any JSON object. `version`, when
    declared, names the workflow's version; else it is derived from the stage graph, so a
    changed graph is a new version (docs/architecture.md §3.9). `migrations` says how jobs
    in flight on an older version move onto this one, by version: `{1: {"analyse":
    "analyse_code"}}` renames `analyse`; stages this graph adds start pending. A version
    with no entry is never migrated: its jobs finish on its own code.
    """

    def __init__(self, name: str, *, input: type | None = None,
                 version: int | None = None,
                 migrations: Mapping[int | str, Mapping[str, str]] | None = None) -> None:
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                    or version < 1):
            raise WorkflowError(f"{name}: a declared version is a whole number from 1,"
                                f" not {version!r}")
        self.name = name
        self.input = input
        self.declared_version = version
        self.migrations = {str(old): dict(renamed) for old, renamed in (migrations or {}).items()}
        if not all(isinstance(a, str) and isinstance(b, str)
                   for renamed in self.migrations.values() for a, b in renamed.items()):
            raise WorkflowError(f"{name}: a migration maps old stage names to new ones,"
                                f" not {migrations!r}")
        self._stages: dict[str, Stage] = {}

    @property
    def version(self) -> str:
        """The version jobs enqueued now record: the declared one, else the graph's hash."""
        if self.declared_version is not None:
            return str(self.declared_version)
        return plan_version(self.plan())

    def migration_from(self, version: str) -> dict[str, str]:
        """The stage renames that move a job of `version` onto this one; refused when none
        is declared, or when it names stages this graph lacks or one stage twice."""
        if version == self.version:
            raise NoMigrationError(f"{self.name} v{version} is the current version")
        if version not in self.migrations:
            raise NoMigrationError(f"{self.name} declares no migration from v{version}: its"
                                   f" jobs finish on v{version}'s workers; add"
                                   f" migrations={{{version!r}: {{old: new}}}} to move them")
        renamed = self.migrations[version]
        unknown = sorted(set(renamed.values()) - set(self._stages))
        if unknown or len(set(renamed.values())) < len(renamed):
            raise MisdeclaredMigrationError(
                                f"{self.name}'s migration from v{version} renames stages to"
                                f" {sorted(renamed.values())}; each must be one stage of it"
                                f" once (unknown: {unknown})")
        return renamed

    def stage(
        self,
        name: str | None = None,
        *,
        after: list[str] | tuple[str, ...] | None = None,
        retry: RetryPolicy | None = None,
        time_limit: float = 300.0,
        uses: Mapping[str, Amount] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated callable as the workflow's next stage.

        `uses` is what one run consumes of rate-limited resources, e.g.
        `{"github_api": 1, "llm_tokens": estimate}`: a tenant's rate for a resource
        (`conveyor tenants set ORG --rate github_api=5000/h`) holds its stages back.
        """

        def register(handler: Handler) -> Handler:
            stage_name = name or handler.__name__
            if stage_name in self._stages:
                raise WorkflowError(f"{self.name} already has a stage {stage_name!r}")
            if after is None:
                predecessors: tuple[str, ...] = tuple(self._stages)[-1:]
            else:
                predecessors = tuple(after)
            unknown = [p for p in predecessors if p not in self._stages]
            if unknown:
                # Requiring predecessors to be declared first rules out cycles by construction.
                raise WorkflowError(f"{stage_name!r} runs after undeclared stages {unknown}")
            if time_limit <= 0:
                raise WorkflowError(f"{stage_name!r} needs a positive time limit")
            self._stages[stage_name] = Stage(
                stage_name, handler, predecessors, retry or RetryPolicy(), time_limit,
                _checked_uses(stage_name, uses or {}),
            )
            return handler

        return register

    def __getitem__(self, name: str) -> Stage:
        try:
            return self._stages[name]
        except KeyError:
            raise WorkflowError(f"{self.name} has no stage {name!r}") from None

    def __iter__(self) -> Iterator[Stage]:
        return iter(self._stages.values())

    def plan(self, skip: frozenset[str] = frozenset()) -> list[PlanStep]:
        """The workflow's shape as plain values, recorded in each job it enqueues.

        A skipped stage's successors run after its predecessors instead.
        """
        unknown = skip - set(self._stages)
        if unknown:
            raise WorkflowError(f"{self.name} has no stages {sorted(unknown)} to skip")
        resolved: dict[str, list[str]] = {}
        for stage in self._stages.values():
            after: list[str] = []
            for predecessor in stage.after:
                for name in resolved[predecessor] if predecessor in skip else [predecessor]:
                    if name not in after:
                        after.append(name)
            resolved[stage.name] = after
        plan = [PlanStep(stage=name, after=after) for name, after in resolved.items()
                if name not in skip]
        if not plan:
            raise WorkflowError(f"{self.name} has no stages")
        return plan


def _is_amount(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def _checked_uses(stage: str, uses: Mapping[str, Amount]) -> dict[str, Amount]:
    for resource, amount in uses.items():
        if not isinstance(resource, str) or not RATE_NAME.fullmatch(resource):
            raise WorkflowError(f"{stage!r} uses {resource!r}, which is not a rate's name")
        if callable(amount):
            continue
        if not _is_amount(amount):
            raise WorkflowError(f"{stage!r} uses {amount!r} of {resource!r}; an amount is a"
                                " finite number, 0 or more, or a function of the context")
    return dict(uses)


class WorkflowError(ConveyorError):
    """Raised when a workflow is declared inconsistently or asked for a stage it lacks."""


class NoMigrationError(WorkflowError):
    """Raised when jobs are to move onto a workflow's version from one it declares no
    migration from (or from the current version itself)."""


class MisdeclaredMigrationError(NoMigrationError):
    """Raised when a declared migration renames stages to ones the graph lacks, or one twice."""
