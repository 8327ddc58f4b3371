"""The `code_review` workflow: validate, gather changes, analyse, review in parallel, publish.

The handlers here are the reference handlers: they do deterministic local work on the
job's trigger so that the whole pipeline runs anywhere. Replace them with handlers that
call the Git platform and a reviewer; the workflow's shape and guarantees stay the same.

    validate -> fetch_changes -> ast_analysis -> review_pull_request -> publish
                                              -> review_files -------/

`ast_analysis` runs only when `CONVEYOR_AST_ANALYSIS=on` (it is skipped from the plan
otherwise): it asks the AST service for an analysis and pauses until
`ast.task.completed` arrives for its task id.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, NotRequired, TypedDict

from conveyor.aggregates import OnTimeout
from conveyor.settings import Settings
from conveyor.workflows.definition import Pause, StageContext, Workflow
from conveyor.workflows.failures import PermanentError


class ReviewInput(TypedDict):
    """What `POST /workflow-queue/jobs` must give to start a review without a webhook: the
    normalised trigger's fields (docs/architecture.md §2.1)."""

    platform: str
    repository: str
    pull_request: str
    head_commit: str
    base_branch: NotRequired[str | None]
    url: NotRequired[str | None]


code_review = Workflow("code_review", input=ReviewInput)

REQUIRED = ("platform", "repository", "pull_request", "head_commit")
AST_REQUESTED = "ast.task.requested"
AST_COMPLETED = "ast.task.completed"
AST_TIMEOUT_SECONDS = 15 * 60


def _simulate_reviewer() -> None:
    # The reference reviewers answer at once; CONVEYOR_REFERENCE_REVIEW_SECONDS makes
    # them take as long as a real one would, so demos and tests can watch the
    # parallel branches run side by side.
    seconds = Settings.from_env().reference_review_seconds
    if seconds > 0:
        time.sleep(seconds)


def _digest(*parts: object) -> int:
    return hashlib.sha256("|".join(map(str, parts)).encode()).digest()[0]


@code_review.stage()
def validate(ctx: StageContext) -> dict[str, Any]:
    """Reference handler: refuse a trigger that lacks what a review needs."""
    missing = [name for name in REQUIRED if not ctx.trigger.get(name)]
    if missing:
        raise PermanentError(f"trigger lacks {', '.join(missing)}")
    return {"review_of": f"{ctx.trigger['repository']}#{ctx.trigger['pull_request']}"}


@code_review.stage()
def fetch_changes(ctx: StageContext) -> dict[str, Any]:
    """Reference handler: describe the change set (a real one fetches the diff)."""
    return {"base": ctx.trigger.get("base_branch"), "head": ctx.trigger["head_commit"]}


@code_review.stage()
def ast_analysis(ctx: StageContext) -> dict[str, Any] | Pause:
    """Reference handler: request an AST analysis, then wait for it without holding a worker."""
    task_id = f"ast-{ctx.job_id}"
    if ctx.woken is None:
        return Pause(
            event_type=AST_COMPLETED,
            key=task_id,
            timeout=AST_TIMEOUT_SECONDS,
            on_timeout=OnTimeout.CONTINUE,
            request={
                "type": AST_REQUESTED,
                "key": task_id,
                "payload": {
                    "task_id": task_id,
                    "repository": ctx.trigger["repository"],
                    "head_commit": ctx.trigger["head_commit"],
                },
            },
        )
    return {"task_id": task_id, "analysis": ctx.resumed_with, "outcome": ctx.woken}


@code_review.stage(after=["ast_analysis"])
def review_pull_request(ctx: StageContext) -> dict[str, Any]:
    """Reference handler: a deterministic pull-request-level verdict from the head commit."""
    _simulate_reviewer()
    findings = _digest("pr", ctx.outputs["fetch_changes"]["head"]) % 3
    return {"findings": findings, "verdict": "approve" if findings == 0 else "comment"}


@code_review.stage(after=["ast_analysis"])
def review_files(ctx: StageContext) -> dict[str, Any]:
    """Reference handler: deterministic file-level findings from the head commit."""
    _simulate_reviewer()
    return {"findings": _digest("files", ctx.outputs["fetch_changes"]["head"]) % 4}


@code_review.stage(after=["review_pull_request", "review_files"])
def publish(ctx: StageContext) -> dict[str, Any]:
    """Reference handler: the summary a real one would post on the pull request."""
    verdict = ctx.outputs["review_pull_request"]
    findings = verdict["findings"] + ctx.outputs["review_files"]["findings"]
    return {
        "summary": f"{ctx.outputs['validate']['review_of']}: {verdict['verdict']}, "
        f"{findings} finding(s)"
    }
