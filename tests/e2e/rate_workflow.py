"""A workflow of one stage that uses one `github_api` call, registered by the rate test's
processes through `CONVEYOR_WORKFLOW_MODULES`."""

from __future__ import annotations

from typing import Any

from conveyor.workflows import StageContext, Workflow

github_call = Workflow("github_call")


@github_call.stage(uses={"github_api": 1})
def call(ctx: StageContext) -> dict[str, Any]:
    return {"called": True}
