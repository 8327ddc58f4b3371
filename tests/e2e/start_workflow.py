"""A workflow started through the API in the start, client and CLI tests, registered by
their processes through `CONVEYOR_WORKFLOW_MODULES`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from conveyor.workflows import PermanentError, StageContext, Workflow


@dataclass
class Greeting:
    name: str
    times: int = 1
    fail: bool = False
    seconds: float = 0


greet = Workflow("greet", input=Greeting)


@greet.stage()
def compose(ctx: StageContext) -> dict[str, Any]:
    if ctx.input.get("fail"):
        raise PermanentError("asked to fail")
    time.sleep(ctx.input.get("seconds", 0))
    return {"text": " ".join([f"hello {ctx.input['name']}"] * ctx.input.get("times", 1))}


@greet.stage()
def shout(ctx: StageContext) -> dict[str, Any]:
    return {"text": ctx.outputs["compose"]["text"].upper()}
