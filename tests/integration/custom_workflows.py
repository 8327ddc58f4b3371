"""Workflows a team registers through `CONVEYOR_WORKFLOW_MODULES`, for the worker's tests.

`long_running` declares a stage longer than the built-in stages' 300 s. `cut_short` and
`given_time` share one handler that runs for `OVERRUN_SECONDS`; only their time limits
differ, so whether the handler is interrupted shows which limit the worker applied.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dramatiq.middleware import TimeLimitExceeded

from conveyor.workflows import StageContext, Workflow

LONG_TIME_LIMIT = 900.0
OVERRUN_SECONDS = 4.0

long_running = Workflow("long_running")


@long_running.stage(time_limit=LONG_TIME_LIMIT)
def crunch(ctx: StageContext) -> dict[str, Any]:
    return {"crunched": True}


interrupted = threading.Event()


def overrun(ctx: StageContext) -> dict[str, Any]:
    """Run for OVERRUN_SECONDS in short steps (an interrupt lands between two of them)."""
    deadline = time.monotonic() + OVERRUN_SECONDS
    try:
        while time.monotonic() < deadline:
            time.sleep(0.05)
    except TimeLimitExceeded:
        interrupted.set()
        raise
    return {"ran_for": OVERRUN_SECONDS}


cut_short = Workflow("cut_short")
cut_short.stage("overrun", time_limit=1.0)(overrun)
given_time = Workflow("given_time")
given_time.stage("overrun", time_limit=30.0)(overrun)
