"""`GET /workflow-queue/workflows`: each workflow's versions, what `conveyor workflows` prints;
`POST /workflow-queue/workflows/{workflow}/migrate`: what `conveyor workflows migrate` does.

Admin routes, as the tenants' are: they count and move every organisation's jobs, and they
are what an operator uses during a deploy (docs/architecture.md §3.9).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import falcon

from conveyor.access import Scope
from conveyor.application import Jobs
from conveyor.http.reads import ReadModels
from conveyor.migrating import migrate_version
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


class MigrationResource:
    """Move a version's jobs in flight onto the current one: `{"from": "1"}`, and
    `"dry_run": true` to see what would move and what cannot; 409 if no migration from that
    version is declared."""

    scope = Scope.ADMIN

    def __init__(self, reads: ReadModels, jobs: Callable[[], Jobs]) -> None:
        self.reads = reads
        self.jobs = jobs

    def on_post(self, req: falcon.Request, resp: falcon.Response, workflow: str) -> None:
        body = req.get_media(default_when_empty={})
        version = body.get("from") if isinstance(body, dict) else None
        dry_run = body.get("dry_run", False) if isinstance(body, dict) else None
        if (not isinstance(version, str | int) or isinstance(version, bool)
                or not str(version) or not isinstance(dry_run, bool)):
            raise falcon.HTTPBadRequest(
                title="Malformed body", description="The body is a JSON object with 'from',"
                " the version whose jobs move, and optionally 'dry_run', true or false.")
        with self.reads.connection() as conn:
            done = migrate_version(self.jobs(), conn, workflow, str(version), dry_run=dry_run)
        resp.media = done.as_json()
