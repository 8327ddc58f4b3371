"""The domain: pure, no I/O, importing nothing of Conveyor but the root of its errors."""

from __future__ import annotations

from conveyor.aggregates.job import (
    Job,
    JobError,
    JobFinishedError,
    MigrationBlockedError,
    TransitionError,
    UnknownStageError,
    job_id_for,
    started_key,
)
from conveyor.aggregates.outside_event import (
    InvalidOutsideEventError,
    OutsideEvent,
    outside_event_id_for,
)
from conveyor.aggregates.pull_request import (
    Duplicate,
    NewReview,
    PullRequest,
    PullRequestClosedError,
    PullRequestError,
    ReviewAlreadyRequestedError,
    Trigger,
    decide_review,
    pull_request_id_for,
)
from conveyor.aggregates.stages import (
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
)

__all__ = [
    "Attempt",
    "AttemptOutcome",
    "Classification",
    "Deferral",
    "Duplicate",
    "InvalidOutsideEventError",
    "Job",
    "JobError",
    "JobFinishedError",
    "MigrationBlockedError",
    "NewReview",
    "OnTimeout",
    "OutsideEvent",
    "PlanStep",
    "PullRequest",
    "PullRequestClosedError",
    "PullRequestError",
    "ReviewAlreadyRequestedError",
    "StageRun",
    "StageState",
    "Status",
    "TransitionError",
    "Trigger",
    "UnknownStageError",
    "Wait",
    "Woken",
    "decide_review",
    "job_id_for",
    "outside_event_id_for",
    "pull_request_id_for",
    "started_key",
]
