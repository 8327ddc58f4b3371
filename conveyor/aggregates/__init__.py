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
    PullRequest,
    PullRequestClosedError,
    PullRequestError,
    ReviewAlreadyRequestedError,
    pull_request_id_for,
)

__all__ = [
    "Classification",
    "InvalidOutsideEventError",
    "Job",
    "JobError",
    "JobFinishedError",
    "OutsideEvent",
    "PullRequest",
    "PullRequestClosedError",
    "PullRequestError",
    "ReviewAlreadyRequestedError",
    "StageState",
    "Status",
    "TransitionError",
    "UnknownStageError",
    "job_id_for",
    "outside_event_id_for",
    "pull_request_id_for",
]
