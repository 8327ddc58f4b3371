"""`GET /workflow-queue/workflows`: each workflow's versions, what `conveyor workflows` prints.

An admin route, as the tenants' are: it counts every organisation's jobs, and it is what an
operator watches during a deploy (docs/architecture.md §3.9).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import falcon

from conveyor.access import Scope
from conveyor.http.reads import ReadModels
from conveyor.versions import workflow_versions
from conveyor.workflows import Workflow


class WorkflowsResource:
    """Each version's jobs in flight and live workers, and whether it is current, draining,
    waiting for a worker, or drained."""

    scope = Scope.ADMIN

    def __init__(self, reads: ReadModels,
                 workflows: Callable[[], Mapping[str, Workflow]]) -> None:
        self.reads = reads
        self.workflows = workflows

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        with self.reads.connection() as conn:
            states = workflow_versions(conn, self.workflows())
        resp.media = {"workflows": [state.as_json() for state in states]}
