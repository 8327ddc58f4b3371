"""Every mapping from a Conveyor error to an HTTP status, and the one shape errors answer in.

`register_error_handlers` is called on each Falcon app (API and webhooks), so a domain error
means the same status wherever it is raised, and handlers raise domain errors, not statuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
import psycopg
import psycopg_pool
from eventsourcing.persistence import InterfaceError, OperationalError

from conveyor.access import (
    InvalidAccessInputError,
    InvalidOrganizationError,
    MissingTokenError,
    ScopeTooSmallError,
    TokenNameTakenError,
    TokenNotFoundError,
    UnknownTokenError,
)
from conveyor.aggregates import InvalidOutsideEventError, TransitionError, UnknownStageError
from conveyor.application import (
    ConflictError,
    InputConflictError,
    JobNotFoundError,
    OrganizationNotFoundError,
    OrganizationRequiredError,
    UnknownWorkflowError,
)
from conveyor.http.waiting import TooManyWaitersError
from conveyor.http.webhooks.platform import (
    MalformedDeliveryError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from conveyor.schedules import ScheduleError, ScheduleExistsError, ScheduleNotFoundError
from conveyor.store.postgres import EventStoreBusyError
from conveyor.tenancy import InvalidTenantSettingError
from conveyor.workflows import MisdeclaredMigrationError, NoMigrationError
from conveyor.workflows.inputs import InvalidInputError

App = falcon.App[falcon.Request, falcon.Response]
Handler = Callable[[falcon.Request, falcon.Response, Exception, Any], None]


def _raise(status: Callable[..., falcon.HTTPError], title: str, **extra: Any) -> Handler:
    def handle(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
        raise status(title=title, description=str(error), **extra)

    return handle


def _scope(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    assert isinstance(error, ScopeTooSmallError)
    raise falcon.HTTPForbidden(title=f"{error.needed.value.title()} scope required",
                               description=str(error))


def _busy(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    # Another session held the event store's lock past CONVEYOR_DB_LOCK_TIMEOUT: answered
    # now, so the platform redelivers, rather than after the library's ten retries.
    raise falcon.HTTPServiceUnavailable(
        title="Event store busy",
        description="The delivery could not be recorded in time; try again shortly.",
        retry_after=1,
    )


def _waiters(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    raise falcon.HTTPServiceUnavailable(title="Too many waiting requests",
                                        description=str(error), retry_after=1)


def _unavailable(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    raise falcon.HTTPServiceUnavailable(
        title="Database unavailable",
        description="The event store cannot be reached; try again shortly.",
        retry_after=5,
    )


# Most specific first is not needed: Falcon picks the handler of the nearest base class.
_STATUSES: dict[type[Exception], Handler] = {
    JobNotFoundError: _raise(falcon.HTTPNotFound, "Job not found"),
    ScheduleNotFoundError: _raise(falcon.HTTPNotFound, "Schedule not found"),
    ScheduleExistsError: _raise(falcon.HTTPConflict, "Schedule exists"),
    ScheduleError: _raise(falcon.HTTPBadRequest, "Invalid schedule"),
    UnknownStageError: _raise(falcon.HTTPNotFound, "Stage not found"),
    TransitionError: _raise(falcon.HTTPConflict, "Not allowed now"),
    UnknownWorkflowError: _raise(falcon.HTTPNotFound, "Workflow not found"),
    NoMigrationError: _raise(falcon.HTTPConflict, "No migration declared"),
    MisdeclaredMigrationError: _raise(falcon.HTTPConflict, "Migration misdeclared"),
    InvalidInputError: _raise(falcon.HTTPBadRequest, "Invalid input"),
    InputConflictError: _raise(falcon.HTTPConflict, "Key used with another input"),
    OrganizationRequiredError: _raise(falcon.HTTPBadRequest, "Organization required"),
    OrganizationNotFoundError: _raise(falcon.HTTPNotFound, "Organization not found"),
    TooManyWaitersError: _waiters,
    ConflictError: _raise(falcon.HTTPConflict, "Job kept changing"),
    InvalidOutsideEventError: _raise(falcon.HTTPBadRequest, "Invalid outside event"),
    WebhookError: _raise(falcon.HTTPBadRequest, "Refused delivery"),
    MalformedDeliveryError: _raise(falcon.HTTPBadRequest, "Malformed delivery"),
    UnsupportedMediaTypeError: _raise(falcon.HTTPUnsupportedMediaType,
                                      "Unsupported content type"),
    UnauthorizedError: _raise(falcon.HTTPUnauthorized, "Unauthorized",
                              challenges=['Basic realm="conveyor"']),
    MissingTokenError: _raise(falcon.HTTPUnauthorized, "Authentication required",
                              challenges=["Bearer"]),
    UnknownTokenError: _raise(falcon.HTTPUnauthorized, "Invalid token", challenges=["Bearer"]),
    ScopeTooSmallError: _scope,
    InvalidAccessInputError: _raise(falcon.HTTPBadRequest, "Invalid token request"),
    InvalidOrganizationError: _raise(falcon.HTTPBadRequest, "Invalid organization"),
    TokenNameTakenError: _raise(falcon.HTTPConflict, "Token name taken"),
    TokenNotFoundError: _raise(falcon.HTTPNotFound, "Token not found"),
    InvalidTenantSettingError: _raise(falcon.HTTPBadRequest, "Invalid tenant settings"),
    EventStoreBusyError: _busy,
    OperationalError: _unavailable,
    InterfaceError: _unavailable,
    psycopg.OperationalError: _unavailable,
    psycopg_pool.PoolTimeout: _unavailable,
}


def register_error_handlers(app: App) -> None:
    """Map Conveyor's errors to statuses, all answered as JSON; anything unmapped is a 500."""
    for error, handler in _STATUSES.items():
        app.add_error_handler(error, handler)
    app.set_error_serializer(serialize_error)


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Every error as JSON `{"title", "description"}`, whatever the client accepts."""
    resp.content_type = falcon.MEDIA_JSON
    resp.media = error.to_dict()
