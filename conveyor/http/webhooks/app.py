"""The webhook ingest app (`conveyor webhooks`): verify, filter, normalise, enqueue.

Order of checks, cheapest and least revealing first: unknown or disabled platform (404),
declared size (413), the body read in bounded chunks (413), authenticity (401), then content
type (415), event and JSON (400), and only then the event store. No refusal stores anything.
"""

from __future__ import annotations

import base64
import logging
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import falcon

from conveyor import logs, tracing
from conveyor.application import Jobs
from conveyor.http.correlation import CorrelationMiddleware
from conveyor.http.gate import DatabaseGate
from conveyor.http.media import create_json_app
from conveyor.http.prometheus import instrument
from conveyor.http.traces import job_root
from conveyor.http.webhooks import azure, bitbucket, github, gitlab
from conveyor.http.webhooks.platform import Headers, Platform, lower_headers
from conveyor.http.webhooks.trigger import Closing, Ignored, Pong, Trigger
from conveyor.settings import Settings

PLATFORMS: Mapping[str, Platform] = {
    p.name: p for p in (github.PLATFORM, gitlab.PLATFORM, bitbucket.PLATFORM, azure.PLATFORM)
}
CHUNK_BYTES = 64 * 1024
log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def create_app(
    settings: Settings,
    jobs: Callable[[], Jobs],
    *,
    platforms: Mapping[str, Platform] = PLATFORMS,
    clock: Clock | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the app; `jobs` is called only when a delivery is enqueued, so after the fork."""
    app = create_json_app([CorrelationMiddleware()])
    instrument(app, "webhooks")
    if settings.database_url is not None:
        # An outage answers 503 at once, after the cheaper checks, before the event store.
        jobs = DatabaseGate(settings.session_url()).guard(jobs)
    app.add_route("/webhooks/{platform}", WebhookResource(settings, jobs, platforms, clock))
    app.add_route("/health/live", LiveResource())
    return app


class WebhookResource:
    """`POST /webhooks/{platform}`: one delivery in, at most one enqueued job out."""

    def __init__(
        self,
        settings: Settings,
        jobs: Callable[[], Jobs],
        platforms: Mapping[str, Platform],
        clock: Clock | None,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.platforms = platforms
        self.clock = clock or (lambda: datetime.now(UTC))

    def on_post(self, req: falcon.Request, resp: falcon.Response, platform: str) -> None:
        with job_root(req, resp) as span:
            span.set({"conveyor.platform": platform})
            self.receive(req, resp, platform, span)

    def receive(self, req: falcon.Request, resp: falcon.Response, platform: str,
                span: tracing.Span) -> None:
        """Verify, filter and normalise one delivery, then enqueue or cancel what it asks."""
        received_at = self.clock()
        found = self.platforms.get(platform)
        if found is None or not found.enabled(self.settings):
            raise falcon.HTTPNotFound(
                title="No such webhook", description=f"No enabled platform {platform!r}."
            )
        body = read_body(req, self.settings.max_body_bytes)
        headers = lower_headers(req.headers)
        found.verify(headers, body, self.settings)
        outcome = found.parse(headers, body, self.settings)
        if isinstance(outcome, Pong):
            answer(resp, falcon.HTTP_200, {"status": "pong"})
            return
        if isinstance(outcome, Ignored):
            answer(resp, falcon.HTTP_200, {"status": "ignored", "reason": outcome.reason})
            return
        # The caller's X-Request-ID (as the middleware accepted it), else the platform's
        # delivery id: the one id in the events, the response header and the logs.
        correlation_id = (req.context.get("correlation_id") if "x-request-id" in headers
                          else outcome.delivery_id)
        if correlation_id is not None:
            req.context.correlation_id = correlation_id
            logs.correlation_id.set(correlation_id)
        if isinstance(outcome, Closing):
            self.close(resp, outcome, correlation_id)
            return
        self.review(resp, outcome, received_at, correlation_id,
                    audit_record(found, headers, body), span)

    def review(
        self,
        resp: falcon.Response,
        trigger: Trigger,
        received_at: datetime,
        correlation_id: str | None,
        delivery: dict[str, Any],
        span: tracing.Span,
    ) -> None:
        """Enqueue the review, superseding the pull request's older running one; the
        request's span is the root of the job's trace."""
        tenant = logs.organization.set(trigger.organization)
        try:
            enqueued = self.jobs().request_review(
                trigger,
                received_at=received_at,
                workflow=self.settings.review_workflow,
                correlation_id=correlation_id,
                delivery=delivery,
                traceparent=span.traceparent,
            )
            log.info("review of %s pull request %s: job %s %s", trigger.repository,
                     trigger.pull_request, enqueued.job_id,
                     "enqueued" if enqueued.created else "already enqueued")
        finally:
            logs.organization.reset(tenant)
        job_id = str(enqueued.job_id)
        span.set({"conveyor.job_id": job_id, "conveyor.workflow": self.settings.review_workflow})
        if not enqueued.created:
            answer(resp, falcon.HTTP_200, {"status": "duplicate", "job_id": job_id})
            return
        document: dict[str, Any] = {"status": "accepted", "job_id": job_id}
        if enqueued.superseded is not None:
            document["superseded"] = str(enqueued.superseded)
        resp.location = f"/workflow-queue/jobs/{job_id}"
        answer(resp, falcon.HTTP_202, document)

    def close(self, resp: falcon.Response, closing: Closing, correlation_id: str | None) -> None:
        """Cancel the closed or merged pull request's running review, if it has one."""
        cancelled = self.jobs().close_pull_request(
            closing.platform,
            closing.repository,
            closing.pull_request,
            reason=closing.reason,
            by=closing.sender or closing.platform,
            correlation_id=correlation_id,
        )
        if cancelled is None:
            reason = f"the pull request was {closing.reason} with no review running"
            answer(resp, falcon.HTTP_200, {"status": "ignored", "reason": reason})
        else:
            answer(resp, falcon.HTTP_200, {
                "status": "cancelled", "job_id": str(cancelled), "reason": closing.reason,
            })


class LiveResource:
    """`GET /health/live`: the process answers, whatever the database is doing."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        answer(resp, falcon.HTTP_200, {"status": "ok"})


def audit_record(platform: Platform, headers: Headers, body: bytes) -> dict[str, Any]:
    """The raw delivery as `Job.Enqueued` keeps it: compressed body, non-secret headers."""
    return {
        "content_type": headers.get("content-type"),
        "encoding": "zlib+base64",
        "body": base64.b64encode(zlib.compress(body)).decode("ascii"),
        "headers": {name: headers[name] for name in platform.audit_headers if name in headers},
    }


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The raw body, refused early by its declared length and again while reading it."""
    declared = req.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    # Without a Content-Length (a chunked body) the server's own stream ends the body;
    # Falcon's bounded stream would read nothing.
    stream = req.bounded_stream if declared is not None else req.stream
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> falcon.HTTPError:
    """The 413 that tells the sender the limit, so an operator can see why."""
    return falcon.HTTPContentTooLarge(
        title="Body too large", description=f"Webhook bodies are limited to {limit} bytes."
    )


def answer(resp: falcon.Response, status: str, document: dict[str, Any]) -> None:
    """Answer with a status and a JSON document."""
    resp.status = status
    resp.media = document
