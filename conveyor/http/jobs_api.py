"""`/workflow-queue/...`: jobs, their history and metrics from projections; cancel and retry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import falcon

from conveyor.application import JobNotFoundError, Jobs
from conveyor.http import params
from conveyor.http.reads import JobFilter, ReadModels
from conveyor.http.scoping import visible

Lags = Callable[[], list[dict[str, Any]]]
MAX_REASON = 500
MAX_BODY_BYTES = 4096
# A token limited to organisations sees how stale its counts may be, not the log's
# positions, which count every organisation's events.
SCOPED_LAG = ("projection", "events_behind", "seconds_behind")


def present_job(row: dict[str, Any]) -> dict[str, Any]:
    """A `jobs` row as the API shows it."""
    job = dict(row)
    job["job_id"] = str(row["job_id"])
    if "trigger" in row:
        job["trigger"] = {k: v for k, v in row["trigger"].items() if k != "raw_body"}
    return job


class JobResource:
    """`/workflow-queue/jobs/{job_id}`: one job's state; `/cancel` and `/retry` command it."""

    def __init__(self, reads: ReadModels, jobs: Callable[[], Jobs]) -> None:
        self.reads = reads
        self.jobs = jobs

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: UUID) -> None:
        row = self.reads.job_or_fresh(job_id, self.jobs())
        if row is None:
            raise JobNotFoundError.of(job_id)
        resp.media = present_job(row) | {"held_stages": self.reads.held_stages(job_id)}

    def on_post_cancel(self, req: falcon.Request, resp: falcon.Response, job_id: UUID) -> None:
        if (req.content_length or 0) > MAX_BODY_BYTES:
            raise falcon.HTTPContentTooLarge(title="Body too large",
                                             description=f"At most {MAX_BODY_BYTES} bytes.")
        body = req.get_media(default_when_empty={})
        by = _principal(req)
        reason = _reason(body, default=f"cancelled through the API by {by}")
        self.jobs().cancel(job_id, reason=reason, by=by, correlation_id=_correlation(req))
        _accepted(req, resp, job_id, "cancel")

    def on_post_retry(self, req: falcon.Request, resp: falcon.Response, job_id: UUID) -> None:
        self.jobs().retry(job_id, by=_principal(req), correlation_id=_correlation(req))
        _accepted(req, resp, job_id, "retry")


def _principal(req: falcon.Request) -> str:
    return str(req.context.get("principal") or "api")


def _correlation(req: falcon.Request) -> str | None:
    return req.context.get("correlation_id")


def _accepted(req: falcon.Request, resp: falcon.Response, job_id: UUID, command: str) -> None:
    resp.status = falcon.HTTP_202
    resp.media = {"job_id": str(job_id), "status": f"{command} accepted",
                  "correlation_id": _correlation(req)}


def _reason(body: Any, default: str) -> str:
    """A cancel's optional `reason`: absent or null takes `default`, else 1 to 500 characters."""
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(title="Malformed body",
                                    description="The body must be a JSON object.")
    reason = body.get("reason")
    if reason is None:
        return default
    if not isinstance(reason, str) or not 0 < len(reason) <= MAX_REASON or "\x00" in reason:
        raise falcon.HTTPBadRequest(
            title="Malformed body",
            description=f"'reason' must be a string of 1 to {MAX_REASON} characters.")
    return reason


def malformed_job_id(req: falcon.Request, resp: falcon.Response, **found: str) -> None:
    """A sink for job paths whose id the `{job_id:uuid}` converter refused: 400, not 404."""
    raise falcon.HTTPBadRequest(title="Malformed job id",
                                description=f"{found['job_id'][:64]!r} is not a UUID.")


MALFORMED_JOB_ID = r"^/workflow-queue/jobs/(?P<job_id>[^/]+)(/history|/cancel|/retry)?$"


class JobsResource:
    """`GET /workflow-queue/jobs`: filtered, newest first, a keyset page at a time."""

    def __init__(self, reads: ReadModels) -> None:
        self.reads = reads

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        order = params.choice(req, "order", ("desc", "asc"))
        where = JobFilter(
            status=params.status(req),
            workflow=params.text(req, "workflow"),
            organization=params.text(req, "organization"),
            platform=params.text(req, "platform"),
            repository=params.text(req, "repository"),
            pull_request=params.text(req, "pull_request"),
            created_after=params.timestamp(req, "created_after"),
            created_before=params.timestamp(req, "created_before"),
        )
        limit = req.get_param_as_int("limit", min_value=1, max_value=params.MAX_LIMIT,
                                     default=params.DEFAULT_LIMIT)
        after = params.cursor(req, order)
        rows = self.reads.jobs(where, after, limit + 1, order, visible=visible(req))
        page, more = rows[:limit], len(rows) > limit
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = params.encode_cursor(last["created_at"], last["job_id"], order)
        resp.media = {"jobs": [present_job(r) for r in page], "limit": limit,
                      "next_cursor": next_cursor}


class HistoryResource:
    """`GET /workflow-queue/jobs/{job_id}/history`: every event and every stage attempt."""

    def __init__(self, reads: ReadModels) -> None:
        self.reads = reads

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: UUID) -> None:
        events, attempts = self.reads.history(job_id)
        if not events:
            raise JobNotFoundError.of(job_id)
        resp.media = {"job_id": str(job_id), "events": events, "stage_attempts": attempts}


class MetricsResource:
    """`GET /workflow-queue/metrics`: counts, rates, percentiles and projection lag."""

    def __init__(self, reads: ReadModels, lags: Lags) -> None:
        self.reads = reads
        self.lags = lags

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        workflow = params.text(req, "workflow")
        hours = req.get_param_as_int("hours", min_value=1, max_value=24 * 90, default=24)
        days = req.get_param_as_int("days", min_value=1, max_value=366, default=7)
        now = datetime.now(UTC)
        since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
        days_since = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            days=days - 1)
        scoped = visible(req)
        found = self.reads.metrics(workflow, since, days_since, visible=scoped)
        by_workflow: dict[str, dict[str, int]] = {}
        by_status: dict[str, int] = {}
        for r in found["status"]:
            by_workflow.setdefault(r["workflow"], {})[r["status"]] = r["jobs"]
            by_status[r["status"]] = by_status.get(r["status"], 0) + r["jobs"]
        window = found["window"]
        done, failed = window.get("completed", 0), window.get("failed", 0)
        durations = found["durations"]
        resp.media = {
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
            "projection_lag": self.lags() if scoped is None else [
                {k: lag[k] for k in SCOPED_LAG} for lag in self.lags()],
        }
