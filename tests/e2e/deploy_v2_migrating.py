"""Version 2 of `deploy_review` (tests/e2e/deploy_v1.py) that declares how version 1's jobs move
onto it: `analyse` renamed `analyse_code`, and a `lint` stage added after it. Each stage says
which code ran it; a paused `analyse` resumes here as `analyse_code`."""

from __future__ import annotations

from typing import Any

from conveyor.workflows import Pause, StageContext, Workflow
from tests.e2e import deploy_v1

CODE = "v2"
deploy_review = Workflow("deploy_review", version=2, migrations={
    deploy_v1.deploy_review.version: {"analyse": "analyse_code"}})


def ran(ctx: StageContext) -> dict[str, Any] | Pause:
    if ctx.stage == "analyse_code" and ctx.input.get("pause") and ctx.woken is None:
        return Pause("deploy.analysed", str(ctx.job_id), timeout=600)
    return {"code": CODE}


for stage in ("fetch", "analyse_code", "lint", "publish"):
    deploy_review.stage(stage)(ran)
