"""The `code_review` workflow: validate a pull request, gather its changes, review, publish.

The handlers here are the reference handlers: they do deterministic local work on the
job's trigger so that the whole pipeline runs anywhere. Replace them with handlers that
call the Git platform and a reviewer; the workflow's shape and guarantees stay the same.
"""

from __future__ import annotations

import hashlib
from typing import Any

from conveyor.workflows.definition import StageContext, Workflow
from conveyor.workflows.failures import PermanentError

code_review = Workflow("code_review")

REQUIRED = ("platform", "repository", "pull_request", "head_commit")


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
    return {
        "base": ctx.trigger.get("base_branch"),
        "head": ctx.trigger["head_commit"],
    }


@code_review.stage()
def review(ctx: StageContext) -> dict[str, Any]:
    """Reference handler: a deterministic verdict derived from the head commit."""
    digest = hashlib.sha256(str(ctx.outputs["fetch_changes"]["head"]).encode()).digest()
    return {"findings": digest[0] % 4, "verdict": "approve" if digest[0] % 4 == 0 else "comment"}


@code_review.stage()
def publish(ctx: StageContext) -> dict[str, Any]:
    """Reference handler: the summary a real one would post on the pull request."""
    verdict = ctx.outputs["review"]
    return {
        "summary": f"{ctx.outputs['validate']['review_of']}: {verdict['verdict']}, "
        f"{verdict['findings']} finding(s)"
    }
