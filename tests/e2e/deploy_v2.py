"""Version 2 of `deploy_review` (tests/e2e/deploy_v1.py): `analyse` renamed `analyse_code`,
and a `lint` stage added after it. Each stage says which code ran it."""

from __future__ import annotations

from typing import Any

from conveyor.workflows import StageContext, Workflow

CODE = "v2"
deploy_review = Workflow("deploy_review")


def ran(ctx: StageContext) -> dict[str, Any]:
    return {"code": CODE}


for stage in ("fetch", "analyse_code", "lint", "publish"):
    deploy_review.stage(stage)(ran)
