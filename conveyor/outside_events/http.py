"""`POST /workflow-queue/events`: the HTTP door for outside events."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from conveyor.application import Jobs
from conveyor.http.scoping import visible
from conveyor.outside_events.parse import MAX_EVENT_BYTES, parse_outside_event
from conveyor.tracing import valid_traceparent


class OutsideEventsResource:
    """Stores an outside event once: 202 when new, 200 when its id was seen before.

    Sent with a token limited to organisations, the event resumes only their waits, and
    its id is deduplicated among their events only (docs/architecture.md §5.2). A valid W3C
    `traceparent` header is kept with it: the span of the wait it resumes links to the
    sender's trace (docs/architecture.md §13); an invalid one is ignored, as W3C says.
    """

    def __init__(self, jobs: Callable[[], Jobs]) -> None:
        self.jobs = jobs

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.content_length is not None and req.content_length > MAX_EVENT_BYTES:
            raise falcon.HTTPContentTooLarge(
                title="Event too large", description=f"At most {MAX_EVENT_BYTES} bytes."
            )
        if req.content_type is None or req.content_type.split(";")[0].strip() != "application/json":
            raise falcon.HTTPUnsupportedMediaType(description="Send application/json.")
        body = req.bounded_stream.read(MAX_EVENT_BYTES + 1)
        event = parse_outside_event(body)
        stored = self.jobs().record_outside_event(
            event.event_id, event.event_type, event.key, event.payload, source="http",
            correlation_id=req.get_header("X-Request-ID"), organizations=visible(req),
            traceparent=valid_traceparent(req.get_header("traceparent")),
        )
        resp.status = falcon.HTTP_202 if stored.created else falcon.HTTP_200
        resp.media = {"status": "accepted" if stored.created else "duplicate",
                      "id": event.event_id}
