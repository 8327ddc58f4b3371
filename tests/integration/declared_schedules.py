"""A schedule declared in code, registered through `CONVEYOR_WORKFLOW_MODULES`."""

from __future__ import annotations

from datetime import datetime

from conveyor.schedules import schedule


@schedule("daily_digest", cron="0 6 * * *", workflow="tick", timezone="Europe/Paris",
          overlap="allow")
def daily_digest(tick: datetime) -> dict[str, str]:
    return {"day": tick.date().isoformat()}
