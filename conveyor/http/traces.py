"""The root span of a request that starts a job: the first span of the job's trace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import falcon

from conveyor import tracing


@contextmanager
def job_root(req: falcon.Request, resp: falcon.Response, *,
             parent: str | None = None) -> Iterator[tracing.Span]:
    """Span the request; the job it starts records `span.traceparent` (docs/architecture.md §13).

    A webhook delivery's trace starts here; a caller's own `parent` traceparent (an API
    client's) makes the job's trace a branch of the caller's. Refusals (4xx) are answers,
    not the span's errors, as OpenTelemetry's HTTP conventions say; 5xx and crashes are.
    """
    route = req.uri_template or req.path
    span = tracing.start(f"{req.method} {route}", parent=parent, root=True, kind="SERVER",
                         attributes={"http.request.method": req.method, "http.route": route,
                                     "url.path": req.path})
    try:
        yield span
    except falcon.HTTPError as error:
        span.set({"http.response.status_code": error.status_code})
        if error.status_code >= 500:
            span.fail(f"{error.status_code} {error.title}")
        raise
    except Exception as error:
        span.fail(f"{type(error).__name__}: {error}")
        raise
    else:
        span.set({"http.response.status_code": resp.status_code})
    finally:
        span.end()
