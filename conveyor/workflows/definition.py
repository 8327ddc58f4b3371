"""How a workflow is declared: named stages, their order, their retry policy and time limit."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class RetryPolicy:
    """When a retryable failure is tried again; defaults are DESIGN section 4's."""

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


Handler = Callable[[StageContext], Any]


@dataclass(frozen=True)
class Stage:
    """One unit of work: a plain callable, run by a worker, whose return value is its output."""

    name: str
    handler: Handler
    after: tuple[str, ...]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    time_limit: float = 300.0


class Workflow:
    """A named set of stages; each runs after those it names, else after the one before it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stages: dict[str, Stage] = {}

    def stage(
        self,
        name: str | None = None,
        *,
        after: list[str] | tuple[str, ...] | None = None,
        retry: RetryPolicy | None = None,
        time_limit: float = 300.0,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated callable as the workflow's next stage."""

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
                stage_name, handler, predecessors, retry or RetryPolicy(), time_limit
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

    def plan(self) -> list[dict[str, Any]]:
        """The workflow's shape as plain values, recorded in each job it enqueues."""
        if not self._stages:
            raise WorkflowError(f"{self.name} has no stages")
        return [{"stage": s.name, "after": list(s.after)} for s in self._stages.values()]


class WorkflowError(Exception):
    """Raised when a workflow is declared inconsistently or asked for a stage it lacks."""
