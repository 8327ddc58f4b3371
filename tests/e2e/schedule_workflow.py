"""A workflow for schedules' tests, registered through `CONVEYOR_WORKFLOW_MODULES`."""

from __future__ import annotations

from typing import Any

from conveyor.workflows import StageContext, Workflow

tick = Workflow("tick")


@tick.stage()
def note(ctx: StageContext) -> dict[str, Any]:
    return {"noted": ctx.input}
