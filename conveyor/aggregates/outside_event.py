"""An outside event: a fact from another system that may resume waiting jobs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from eventsourcing.domain import Aggregate, event

from conveyor.errors import ConveyorError

# Outside events are stored once: the aggregate id is a UUIDv5 of the sender's id, and
# of the organisations it was sent for when the sender is limited to some.
OUTSIDE_EVENT_NAMESPACE = uuid.UUID("0b6e4c5e-2f8e-4c8a-9d6f-6a1f7c3e2b90")
SCOPED_OUTSIDE_EVENT_NAMESPACE = uuid.UUID("5d0f3f7a-8b1e-4c6e-a2f4-93c1d8e7b6a1")
_TYPE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
MAX_ID_LENGTH = 200
MAX_KEY_LENGTH = 500


def outside_event_id_for(event_id: str, organizations: Iterable[str] | None = None) -> uuid.UUID:
    """The aggregate id under which the outside event `event_id` is stored.

    An event sent for some organisations is deduplicated among theirs only, so one
    tenant's id never refuses another's event (docs/architecture.md §5.2); an unscoped
    event keeps the id it always had.
    """
    if organizations is None:
        return uuid.uuid5(OUTSIDE_EVENT_NAMESPACE, event_id)
    name = orjson.dumps([sorted(organizations), event_id]).decode()
    return uuid.uuid5(SCOPED_OUTSIDE_EVENT_NAMESPACE, name)


def check_outside_event(event_id: Any, event_type: Any, key: Any) -> None:
    """Refuse an outside event whose id, type or key cannot be matched reliably."""
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_ID_LENGTH:
        raise InvalidOutsideEventError(f"id must be a string of 1 to {MAX_ID_LENGTH} characters")
    if not isinstance(event_type, str) or not _TYPE.match(event_type):
        raise InvalidOutsideEventError(
            "type must be 1 to 200 letters, digits or the characters _ . : -"
        )
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise InvalidOutsideEventError(f"key must be a string of 1 to {MAX_KEY_LENGTH} characters")


class OutsideEvent(Aggregate):
    """One received outside event; a repeat of its id is refused by the event store."""

    @staticmethod
    def create_id(event_id: str, organizations: list[str] | None = None) -> uuid.UUID:
        return outside_event_id_for(event_id, organizations)

    class Received(Aggregate.Created):
        """The event arrived; version 2 added the `organizations` it was sent for, version 3
        the sender's W3C `traceparent`, which the span of the wait it resumes links to."""

        class_version = 3

        event_id: str
        event_type: str
        key: str
        payload: Any
        source: str
        correlation_id: str | None
        # None: sent for every organisation (the AMQP door, an unscoped token).
        organizations: list[str] | None
        traceparent: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Events stored before scoped tokens were all sent unscoped.
            state["organizations"] = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["traceparent"] = None

    @event(Received)
    def __init__(
        self,
        event_id: str,
        event_type: str,
        key: str,
        payload: Any,
        source: str,
        correlation_id: str | None = None,
        organizations: list[str] | None = None,
        traceparent: str | None = None,
    ) -> None:
        check_outside_event(event_id, event_type, key)
        if organizations is not None and not organizations:
            raise InvalidOutsideEventError("an event sent for organisations names at least one")
        self.event_id = event_id
        self.event_type = event_type
        self.key = key
        self.payload = payload
        self.source = source
        self.correlation_id = correlation_id
        self.organizations = organizations
        self.traceparent = traceparent


class InvalidOutsideEventError(ConveyorError, ValueError):
    """Raised when an outside event lacks a usable id, type or key."""
