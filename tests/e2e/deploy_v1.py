"""Version 1 of the `deploy_review` workflow of the rolling-deploy test: fetch, analyse (which
pauses for `deploy.analysed` when its input asks), publish. Each stage says which code ran it."""

from __future__ import annotations

from typing import Any

from conveyor.workflows import Pause, StageContext, Workflow

CODE = "v1"
deploy_review = Workflow("deploy_review")


def analysed(ctx: StageContext) -> dict[str, Any] | Pause:
    """Wait for the job's `deploy.analysed` event first, when the input asks to pause."""
    if ctx.input.get("pause") and ctx.woken is None:
        return Pause("deploy.analysed", str(ctx.job_id), timeout=600)
    return {"code": CODE}


@deploy_review.stage()
def fetch(ctx: StageContext) -> dict[str, Any]:
    return {"code": CODE}


deploy_review.stage("analyse")(analysed)


@deploy_review.stage()
def publish(ctx: StageContext) -> dict[str, Any]:
    return {"code": CODE}
