"""The domain: pure, no I/O, importing nothing else of Conveyor."""

from __future__ import annotations

from conveyor.aggregates.job import (
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

__all__ = [
    "Classification",
    "Duplicate",
    "InvalidOutsideEventError",
    "Job",
    "JobError",
    "JobFinishedError",
    "NewReview",
    "OutsideEvent",
    "PullRequest",
    "PullRequestClosedError",
    "PullRequestError",
    "ReviewAlreadyRequestedError",
    "StageState",
    "Status",
    "TransitionError",
    "Trigger",
    "UnknownStageError",
    "decide_review",
    "job_id_for",
    "outside_event_id_for",
    "pull_request_id_for",
]
