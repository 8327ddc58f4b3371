"""A job's vocabulary: its statuses, its stages' states and the values it keeps per stage.

Plain values with no behaviour of their own beyond a query or two; the rules that move
them live in the Job aggregate (`conveyor.aggregates.job`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict


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


class OnTimeout(StrEnum):
    """What a wait does when its deadline passes: fail the job, or run the stage without it."""

    FAIL = "fail"
    CONTINUE = "continue"


class Woken(StrEnum):
    """Why a stage runs again after a pause."""

    RESUMED = "resumed"
    TIMED_OUT = "timed_out"


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
    # Held back by a rate limit until a time: the same attempt is dispatched again then.
    DEFERRED = "deferred"
    DONE = "done"
    FAILED = "failed"


ACTIVE = frozenset({StageState.RUNNING, StageState.WAITING, StageState.RETRY_SCHEDULED,
                    StageState.DEFERRED})


class AttemptOutcome(StrEnum):
    """How one attempt of a stage ended, as its history shows it."""

    RUNNING = "running"
    COMPLETED = "completed"
    PAUSED = "paused"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    RECOVERED = "recovered"
    DEFERRED = "deferred"  # the service it called said to wait; the attempt is kept
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"


class PlanStep(TypedDict):
    """One stage of a job's plan, as recorded when it was enqueued."""

    stage: str
    after: list[str]


def plan_version(plan: Sequence[PlanStep]) -> str:
    """The version a stage graph derives: a short stable hash of its names, order and `after`.

    A workflow that declares no version has its full graph's (docs/architecture.md §3.9).
    """
    shape = [[step["stage"], list(step["after"])] for step in plan]
    return hashlib.sha256(json.dumps(shape, separators=(",", ":")).encode()).hexdigest()[:8]


class Wait(TypedDict):
    """An open pause: the outside event a stage waits for, until when, and what then."""

    event_type: str
    key: str
    deadline: datetime
    attempt: int
    on_timeout: OnTimeout


class Deferral(TypedDict):
    """A stage held back by a tenant's rate limit: which resource, and until when."""

    resource: str
    until: datetime


@dataclass(frozen=True)
class StageRun:
    """One stage of one job: where it stands and what it has been through."""

    state: StageState = StageState.PENDING
    attempt: int = 1
    # Failures since the last manual retry: what the retry policy's budget counts.
    failures: int = 0
    # Retries scheduled, recoveries and re-dispatches of lost messages, over the job's life.
    retries: int = 0
    recoveries: int = 0
    redispatches: int = 0
    retry_at: datetime | None = None
    wait: Wait | None = None
    deferral: Deferral | None = None
    output: Any = None
    # The outside event's payload a resumed stage is told, and why it runs again.
    resumed_with: Any = None
    woken: Woken | None = None


@dataclass(frozen=True)
class Attempt:
    """One attempt of a stage, from its start to the event that ended it."""

    stage: str
    attempt: int
    started_version: int
    started_at: datetime
    outcome: AttemptOutcome = AttemptOutcome.RUNNING
    finished_at: datetime | None = None
    ended_version: int | None = None
    classification: str | None = None
    error: str | None = None


def ready_stages(plan: list[PlanStep], runs: Mapping[str, StageRun]) -> list[str]:
    """The stages of `plan` that are pending with every predecessor done."""
    return [
        step["stage"]
        for step in plan
        if runs[step["stage"]].state is StageState.PENDING
        and all(runs[p].state is StageState.DONE for p in step["after"])
    ]


def carried(old: Iterable[str], plan: Sequence[PlanStep],
            renamed: Mapping[str, str]) -> dict[str, str]:
    """Which old stage each stage of a new `plan` takes over, as {new name: old name}.

    A stage `renamed` names moves to its new name; another keeps its name if the new plan
    has it and no renamed stage took that name. Stages of `plan` missing here start anew
    (docs/architecture.md §3.9).
    """
    names = {step["stage"] for step in plan}
    had = list(old)
    taken = {new: source for source, new in renamed.items() if source in had}
    kept = {name: name for name in had
            if name in names and name not in taken and name not in renamed}
    return {new: source for new, source in {**kept, **taken}.items() if new in names}
