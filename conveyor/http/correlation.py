"""Correlation ids: taken from X-Request-ID or made, echoed, logged and passed to commands."""

from __future__ import annotations

import re
import uuid
from typing import Any

import falcon

from conveyor import logs

HEADER = "X-Request-ID"
# A caller's id is kept only if it is short and plain, so it is safe in logs and events.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class CorrelationMiddleware:
    """Gives every request a correlation id, in `req.context` and in the log context."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header(HEADER) or ""
        value = given if _ACCEPTABLE.fullmatch(given) else uuid.uuid4().hex
        req.context.correlation_id = value
        req.context.correlation_token = logs.correlation_id.set(value)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        value = req.context.get("correlation_id")
        if value is not None:
            resp.set_header(HEADER, value)
        token = req.context.get("correlation_token")
        if token is not None:
            logs.correlation_id.reset(token)
