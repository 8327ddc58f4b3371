"""`/workflow-queue/...`: jobs, their history and metrics from projections; start, wait,
cancel and retry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import falcon
import orjson

from conveyor.access import parse_organization
from conveyor.application import JobNotFoundError, Jobs
from conveyor.http import params
from conveyor.http.reads import JobFilter, ReadModels, Row
from conveyor.http.scoping import visible
from conveyor.http.traces import job_root
from conveyor.http.waiting import MAX_WAIT_SECONDS, JobWaiter
from conveyor.projections.jobs import SETTLED
from conveyor.tenancy import parse_priority
from conveyor.tracing import valid_traceparent

Lags = Callable[[], list[dict[str, Any]]]
MAX_REASON = 500
MAX_BODY_BYTES = 4096
# A start's body: its input is stored in the job's first event, so it is kept small.
MAX_START_BYTES = 256 * 1024
MAX_KEY = 200
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

    def __init__(self, reads: ReadModels, jobs: Callable[[], Jobs], waiter: JobWaiter) -> None:
        self.reads = reads
        self.jobs = jobs
        self.waiter = waiter

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: UUID) -> None:
        """`?wait=N` (at most MAX_WAIT_SECONDS): answer once the job is finished or waits
        for an outside event, or after N seconds with its state then."""
        wait = req.get_param_as_int("wait", min_value=0, max_value=MAX_WAIT_SECONDS, default=0)
        row = self._row(job_id, self.reads)
        if wait and row["status"] not in SETTLED:
            # The primary's, as the waiter's notifications are: a standby may not have
            # replayed the settled row yet.
            primary = self.reads.primary
            self.waiter.wait(job_id, wait,
                             lambda: self._row(job_id, primary)["status"] in SETTLED)
            row = self._row(job_id, primary)
        (row,) = self.reads.with_version_waits([row])
        resp.media = present_job(row) | {"held_stages": self.reads.held_stages(job_id)}

    def _row(self, job_id: UUID, reads: ReadModels) -> Row:
        row = reads.job_or_fresh(job_id, self.jobs())
        if row is None:
            raise JobNotFoundError.of(job_id)
        return row

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


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _start_body(req: falcon.Request) -> dict[str, Any]:
    """A start's body checked field by field: `workflow`, `key`, `input`, `organization`,
    `priority`."""
    if req.content_length is not None and req.content_length > MAX_START_BYTES:
        raise falcon.HTTPContentTooLarge(title="Body too large",
                                         description=f"At most {MAX_START_BYTES} bytes.")
    if req.content_type is None or req.content_type.split(";")[0].strip() != falcon.MEDIA_JSON:
        raise falcon.HTTPUnsupportedMediaType(description="Send application/json.")
    raw = req.bounded_stream.read(MAX_START_BYTES + 1)
    if len(raw) > MAX_START_BYTES:
        raise falcon.HTTPContentTooLarge(title="Body too large",
                                         description=f"At most {MAX_START_BYTES} bytes.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _malformed("The body must be JSON.") from None
    if not isinstance(body, dict):
        raise _malformed("The body must be a JSON object.")
    unknown = sorted(set(body) - {"workflow", "key", "input", "organization", "priority"})
    if unknown:
        raise _malformed(f"'{unknown[0]}' is not a field of a start.")
    for name in ("workflow", "key"):
        value = body.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY or any(
                ord(c) < 32 for c in value):
            raise _malformed(f"'{name}' must be a string of 1 to {MAX_KEY} characters,"
                             " without control characters.")
    organization = body.get("organization")
    if organization is not None:
        if not isinstance(organization, str):
            raise _malformed("'organization' must be a string.")
        organization = parse_organization(organization)
    priority = body.get("priority")
    if priority is not None:
        priority = parse_priority(priority)
    return {"workflow": body["workflow"], "key": body["key"],
            "input": body.get("input", {}), "organization": organization,
            "priority": priority}


def _malformed(description: str) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(title="Malformed body", description=description)


def malformed_job_id(req: falcon.Request, resp: falcon.Response, **found: str) -> None:
    """A sink for job paths whose id the `{job_id:uuid}` converter refused: 400, not 404."""
    raise falcon.HTTPBadRequest(title="Malformed job id",
                                description=f"{found['job_id'][:64]!r} is not a UUID.")


MALFORMED_JOB_ID = r"^/workflow-queue/jobs/(?P<job_id>[^/]+)(/history|/cancel|/retry)?$"


class JobsResource:
    """`GET /workflow-queue/jobs`: filtered, newest first, a keyset page at a time;
    `POST` starts a job (docs/architecture.md §2.5)."""

    def __init__(self, reads: ReadModels, jobs: Callable[[], Jobs]) -> None:
        self.reads = reads
        self.jobs = jobs

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """202 with `Location` for a new job, 200 for the job the same key started."""
        body = _start_body(req)
        caller = valid_traceparent(req.get_header("traceparent"))
        with job_root(req, resp, parent=caller) as span:
            started = self.jobs().start(
                body["workflow"], body["key"], body["input"], by=_principal(req),
                organization=body["organization"], allowed=visible(req),
                correlation_id=_correlation(req), priority=body["priority"],
                traceparent=span.traceparent)
        location = f"/workflow-queue/jobs/{started.job_id}"
        resp.status = falcon.HTTP_202 if started.created else falcon.HTTP_200
        resp.location = location
        resp.media = {"job_id": str(started.job_id), "created": started.created,
                      "location": location, "superseded": _text(started.superseded),
                      "correlation_id": _correlation(req)}

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
        resp.media = {"jobs": [present_job(r) for r in self.reads.with_version_waits(page)],
                      "limit": limit,
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
