"""A workflow for schedules' tests, registered through `CONVEYOR_WORKFLOW_MODULES`."""

from __future__ import annotations

import time
from typing import Any

from conveyor.workflows import StageContext, Workflow

tick = Workflow("tick")


@tick.stage()
def note(ctx: StageContext) -> dict[str, Any]:
    return {"noted": ctx.input}


# Runs longer than a per-second schedule's period, so its runs would overlap.
SLOW_SECONDS = 2.5
slow = Workflow("slow")


@slow.stage()
def crawl(ctx: StageContext) -> dict[str, Any]:
    time.sleep(SLOW_SECONDS)  # the work itself, not a test waiting on a condition
    return {"crawled": True}
