"""`/workflow-queue/...`: jobs, their history and metrics from projections; cancel and retry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import falcon
import orjson

from conveyor.application import Jobs
from conveyor.http import params
from conveyor.http.reads import JobFilter, ReadModels

Lags = Callable[[], list[dict[str, Any]]]


def to_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NAIVE_UTC)


def present_job(row: dict[str, Any]) -> dict[str, Any]:
    """A `jobs` row as the API shows it."""
    job = dict(row)
    job["job_id"] = str(row["job_id"])
    if "trigger" in row:
        job["trigger"] = {k: v for k, v in row["trigger"].items() if k != "raw_body"}
    return job


class JobResource:
    """`GET /workflow-queue/jobs/{job_id}`: one job's current state."""

    def __init__(self, reads: ReadModels) -> None:
        self.reads = reads

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        uid = params.job_id(job_id)
        row = self.reads.job(uid)
        if row is None:
            raise falcon.HTTPNotFound(title="Job not found", description=f"No job {uid}.")
        resp.data = to_json(present_job(row))


class JobsResource:
    """`GET /workflow-queue/jobs`: filtered, newest first, a keyset page at a time."""

    def __init__(self, reads: ReadModels) -> None:
        self.reads = reads

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        order = params.choice(req, "order", ("desc", "asc"))
        where = JobFilter(
            status=params.status(req),
            workflow=params.text(req, "workflow"),
            platform=params.text(req, "platform"),
            repository=params.text(req, "repository"),
            pull_request=params.text(req, "pull_request"),
            created_after=params.timestamp(req, "created_after"),
            created_before=params.timestamp(req, "created_before"),
        )
        limit = params.integer(req, "limit", params.DEFAULT_LIMIT, 1, params.MAX_LIMIT)
        after = params.cursor(req, order)
        rows = self.reads.jobs(where, after, limit + 1, order)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = params.encode_cursor(last["created_at"], last["job_id"], order)
        resp.data = to_json({"jobs": [present_job(r) for r in page], "limit": limit,
                             "next_cursor": next_cursor})


class HistoryResource:
    """`GET /workflow-queue/jobs/{job_id}/history`: every event and every stage attempt."""

    def __init__(self, reads: ReadModels) -> None:
        self.reads = reads

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        uid = params.job_id(job_id)
        events, attempts = self.reads.history(uid)
        if not events:
            raise falcon.HTTPNotFound(title="Job not found", description=f"No job {uid}.")
        resp.data = to_json({"job_id": str(uid), "events": events, "stage_attempts": attempts})


class CommandResource:
    """`POST /workflow-queue/jobs/{job_id}/cancel` or `/retry`: a command, through `Jobs`."""

    def __init__(self, jobs: Callable[[], Jobs], command: str) -> None:
        self.jobs = jobs
        self.command = command

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        uid = params.job_id(job_id)
        by = str(req.context.get("principal") or "api")
        correlation_id = req.context.get("correlation_id")
        if self.command == "cancel":
            reason = _reason(req)
            self.jobs().cancel(uid, reason=reason, by=by, correlation_id=correlation_id)
        else:
            self.jobs().retry(uid, by=by, correlation_id=correlation_id)
        resp.status = falcon.HTTP_202
        resp.data = to_json({"job_id": str(uid), "status": f"{self.command} accepted",
                             "correlation_id": correlation_id})


def _reason(req: falcon.Request) -> str:
    raw = req.bounded_stream.read(4096) if req.content_length else b""
    if not raw:
        return "cancelled through the API"
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise falcon.HTTPBadRequest(title="Malformed body",
                                    description="The body must be JSON.") from None
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not 0 < len(reason) <= 500 or "\x00" in reason:
        raise falcon.HTTPBadRequest(title="Malformed body",
                                    description="'reason' must be a string of 1 to 500 characters.")
    return reason


class WhoAmIResource:
    """`GET /workflow-queue/whoami`: the scopes of the token asking, so a UI can offer commands."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = to_json({"scopes": list(req.context.get("scopes") or ["read"])})


class MetricsResource:
    """`GET /workflow-queue/metrics`: counts, rates, percentiles and projection lag."""

    def __init__(self, reads: ReadModels, lags: Lags) -> None:
        self.reads = reads
        self.lags = lags

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        workflow = params.text(req, "workflow")
        hours = params.integer(req, "hours", 24, 1, 24 * 90)
        days = params.integer(req, "days", 7, 1, 366)
        now = datetime.now(UTC)
        since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
        days_since = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            days=days - 1)
        found = self.reads.metrics(workflow, since, days_since)
        by_workflow: dict[str, dict[str, int]] = {}
        by_status: dict[str, int] = {}
        for r in found["status"]:
            by_workflow.setdefault(r["workflow"], {})[r["status"]] = r["jobs"]
            by_status[r["status"]] = by_status.get(r["status"], 0) + r["jobs"]
        window = found["window"]
        done, failed = window.get("completed", 0), window.get("failed", 0)
        durations = found["durations"]
        resp.data = to_json({
            "workflow": workflow, "window_hours": hours, "since": since,
            "jobs_by_status": by_status, "jobs_by_workflow": by_workflow,
            "totals": found["totals"], "window": window,
            "success_rate": round(done / (done + failed), 4) if done + failed else None,
            "per_hour": found["hourly"], "per_day": found["daily"],
            "durations_ms": {
                "total": durations.get("total"), "queue_wait": durations.get("queue_wait"),
                "stages": {m.removeprefix("stage:"): v for m, v in durations.items()
                           if m.startswith("stage:")},
            },
            "projection_lag": self.lags(),
        })
