"""Workflow definitions: stages, their order, retry policy and time limits."""

from __future__ import annotations

from conveyor.workflows.code_review import code_review
from conveyor.workflows.definition import (
    MisdeclaredMigrationError,
    NoMigrationError,
    Pause,
    RetryPolicy,
    Stage,
    StageContext,
    Workflow,
    WorkflowError,
)
from conveyor.workflows.failures import (
    PermanentError,
    RateLimitedError,
    RetryableError,
    classify,
)

WORKFLOWS: dict[str, Workflow] = {code_review.name: code_review}


def skipped_stages(*, ast_analysis: bool) -> dict[str, frozenset[str]]:
    """Stages left out of new jobs' plans by configuration, per workflow."""
    return {code_review.name: frozenset() if ast_analysis else frozenset({"ast_analysis"})}

__all__ = [
    "WORKFLOWS",
    "MisdeclaredMigrationError",
    "NoMigrationError",
    "Pause",
    "PermanentError",
    "RateLimitedError",
    "RetryPolicy",
    "RetryableError",
    "Stage",
    "StageContext",
    "Workflow",
    "WorkflowError",
    "classify",
    "code_review",
    "skipped_stages",
]
