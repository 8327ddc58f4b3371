"""The REST API (`conveyor api`): the read side from projections, and health."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import falcon
import orjson

from conveyor.http.auth import BearerAuth
from conveyor.http.errors import register_error_handlers
from conveyor.http.reads import ReadModels
from conveyor.settings import Settings


def to_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NAIVE_UTC)


def present_job(row: dict[str, Any]) -> dict[str, Any]:
    """A `jobs` row as the API shows it."""
    job = {k: v for k, v in row.items() if k != "trigger"}
    job["job_id"] = str(row["job_id"])
    job["trigger"] = {k: v for k, v in row["trigger"].items() if k != "raw_body"}
    return job


class JobResource:
    """One job's current state, from the `jobs` read model."""

    def __init__(self, reads: ReadModels) -> None:
        self.reads = reads

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        try:
            uid = UUID(job_id)
        except ValueError:
            raise falcon.HTTPBadRequest(
                title="Malformed job id", description=f"{job_id!r} is not a UUID."
            ) from None
        row = self.reads.job(uid)
        if row is None:
            raise falcon.HTTPNotFound(title="Job not found", description=f"No job {uid}.")
        resp.data = to_json(present_job(row))


class LiveResource:
    """Liveness: the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = to_json({"status": "ok"})


class ReadyResource:
    """Readiness: the process can reach the database it serves from."""

    def __init__(self, reads: ReadModels) -> None:
        self.reads = reads

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            self.reads.ping()
        except Exception as error:
            resp.status = falcon.HTTP_503
            resp.data = to_json({"status": "unavailable", "postgresql": str(error)})
            return
        resp.data = to_json({"status": "ok", "postgresql": "ok"})


def create_app(settings: Settings | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the API app; gunicorn calls this in each worker, after the fork."""
    settings = settings or Settings.from_env()
    if settings.database_url is None:
        raise RuntimeError("CONVEYOR_DATABASE_URL is not set")
    reads = ReadModels(settings.database_url)
    app = falcon.App(
        media_type=falcon.MEDIA_JSON,
        middleware=[BearerAuth(settings.api_read_tokens, settings.api_write_tokens)],
    )
    register_error_handlers(app)
    app.add_route("/workflow-queue/jobs/{job_id}", JobResource(reads))
    app.add_route("/health/live", LiveResource())
    app.add_route("/health/ready", ReadyResource(reads))
    return app
