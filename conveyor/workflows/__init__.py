"""Workflow definitions: stages, their order, retry policy and time limits."""

from __future__ import annotations

from conveyor.workflows.code_review import code_review
from conveyor.workflows.definition import (
    RetryPolicy,
    Stage,
    StageContext,
    Workflow,
    WorkflowError,
)
from conveyor.workflows.failures import PermanentError, RetryableError, classify

WORKFLOWS: dict[str, Workflow] = {code_review.name: code_review}

__all__ = [
    "WORKFLOWS",
    "PermanentError",
    "RetryPolicy",
    "RetryableError",
    "Stage",
    "StageContext",
    "Workflow",
    "WorkflowError",
    "classify",
    "code_review",
]
