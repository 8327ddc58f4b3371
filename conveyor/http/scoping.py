"""What a token limited to organisations may see: only their jobs (docs/architecture.md §9.1).

`visible(req)` is what lists, counts and outside events are narrowed to; `TenantScope`
guards every route of one job (`{job_id}`: the job, its history, cancel, retry, and any
route added later) before its resource runs. Another organisation's job is answered
exactly as a job that does not exist, so a token learns nothing of it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import falcon

from conveyor.application import JobNotFoundError
from conveyor.http.reads import ReadModels, Visible


def visible(req: falcon.Request) -> Visible:
    """The organisations the request's token may see; None: every one (or an open path)."""
    organizations: Visible = req.context.get("organizations")
    return organizations


class TenantScope:
    """Falcon middleware, after `BearerAuth`: a scoped token's routes of one job answer 404
    unless the job is of one of its organisations."""

    def __init__(self, reads: ReadModels) -> None:
        self.reads = reads

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        organizations = visible(req)
        job_id = params.get("job_id")
        # A job id the route's converter refused is a string: that route answers 400.
        if organizations is None or not isinstance(job_id, UUID):
            return
        if not self.reads.visible(job_id, organizations):
            raise JobNotFoundError.of(job_id)
