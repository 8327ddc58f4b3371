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

__all__ = [
    "Classification",
    "Job",
    "JobError",
    "JobFinishedError",
    "StageState",
    "Status",
    "TransitionError",
    "UnknownStageError",
    "job_id_for",
]
