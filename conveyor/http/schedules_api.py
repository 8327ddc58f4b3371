"""`/workflow-queue/schedules`: list, create, pause, resume and trigger schedules.

Reads and writes go through `Scheduler` (docs/architecture.md §3.8); errors map to
statuses in `conveyor.http.errors`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from conveyor.scheduler import Scheduler
from conveyor.schedules import ScheduleError, schedule, window_of

__all__ = ["ScheduleResource", "SchedulesResource"]

_FIELDS = {"name", "cron", "workflow", "input", "timezone", "catch_up", "window_seconds",
           "overlap"}


class SchedulesResource:
    """`GET` every schedule with its next and last fire; `POST` one (write scope)."""

    def __init__(self, scheduler: Callable[[], Scheduler]) -> None:
        self.scheduler = scheduler

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"schedules": [state.as_dict(next_fire)
                                    for state, next_fire in self.scheduler().list()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.get_media()
        if not isinstance(body, dict) or not {"name", "cron", "workflow"} <= body.keys():
            raise ScheduleError("A schedule needs at least name, cron and workflow.")
        unknown = body.keys() - _FIELDS
        if unknown:
            raise ScheduleError(f"Unknown fields: {', '.join(sorted(unknown))}.")
        if not isinstance(body.get("input", {}), dict):
            raise ScheduleError("input must be an object.")
        created = self.scheduler().create(schedule(
            str(body["name"]), cron=str(body["cron"]), workflow=str(body["workflow"]),
            input=body.get("input"), timezone=str(body.get("timezone", "UTC")),
            catch_up=str(body.get("catch_up", "skip")),
            window=window_of(body.get("window_seconds")),
            overlap=str(body.get("overlap", "skip"))))
        resp.status = falcon.HTTP_201
        resp.location = f"/workflow-queue/schedules/{created.schedule.name}"
        resp.media = _one(self.scheduler(), created.schedule.name)


class ScheduleResource:
    """`GET` one schedule; `POST .../pause`, `.../resume`, `.../trigger` (write scope)."""

    def __init__(self, scheduler: Callable[[], Scheduler]) -> None:
        self.scheduler = scheduler

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = _one(self.scheduler(), name)

    def on_post_pause(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.scheduler().pause(name)
        resp.media = _one(self.scheduler(), name)

    def on_post_resume(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.scheduler().resume(name)
        resp.media = _one(self.scheduler(), name)

    def on_post_trigger(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        started = self.scheduler().trigger(name, by=str(req.context.get("principal") or "api"))
        resp.status = falcon.HTTP_202
        resp.location = f"/workflow-queue/jobs/{started.job_id}"
        resp.media = {"job_id": str(started.job_id)}


def _one(scheduler: Scheduler, name: str) -> dict[str, Any]:
    state = scheduler.get(name)
    return state.as_dict(scheduler.next_fire(state))
