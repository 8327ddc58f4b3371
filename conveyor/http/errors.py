"""Every mapping from a domain error to an HTTP status, registered on each Falcon app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
import orjson
import psycopg
import psycopg_pool
from eventsourcing.persistence import InterfaceError, OperationalError

from conveyor.aggregates import TransitionError, UnknownStageError
from conveyor.application import ConflictError, JobNotFoundError


def _raise(status: Callable[..., falcon.HTTPError], title: str) -> Any:
    def handle(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
        raise status(title=title, description=str(error))

    return handle


def _unavailable(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    raise falcon.HTTPServiceUnavailable(
        title="Database unavailable",
        description="The event store cannot be reached; try again shortly.",
        retry_after=5,
    )


def register_error_handlers(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Map Conveyor's errors to statuses; anything unmapped stays a 500."""
    app.add_error_handler(JobNotFoundError, _raise(falcon.HTTPNotFound, "Job not found"))
    app.add_error_handler(UnknownStageError, _raise(falcon.HTTPNotFound, "Stage not found"))
    app.add_error_handler(TransitionError, _raise(falcon.HTTPConflict, "Not allowed now"))
    app.add_error_handler(ConflictError, _raise(falcon.HTTPConflict, "Job kept changing"))
    app.add_error_handler(OperationalError, _unavailable)
    app.add_error_handler(InterfaceError, _unavailable)
    app.add_error_handler(psycopg.OperationalError, _unavailable)
    app.add_error_handler(psycopg_pool.PoolTimeout, _unavailable)


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Every error as JSON `{"title", "description"}`, whatever the client accepts."""
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(error.to_dict())
