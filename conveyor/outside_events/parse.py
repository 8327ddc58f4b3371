"""Parsing outside events, shared by the AMQP consumer and `POST /workflow-queue/events`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from conveyor.aggregates.outside_event import InvalidOutsideEventError, check_outside_event

MAX_EVENT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class OutsideEventIn:
    """An outside event as it arrives: id, type, key and a JSON payload."""

    event_id: str
    event_type: str
    key: str
    payload: Any


def parse_outside_event(body: bytes, default_type: str | None = None) -> OutsideEventIn:
    """Parse `{"id", "type", "key", "payload"}`; raise InvalidOutsideEventError if unusable."""
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidOutsideEventError(f"an outside event may be at most {MAX_EVENT_BYTES} bytes")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidOutsideEventError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidOutsideEventError("an outside event is a JSON object")
    event_id, key = document.get("id"), document.get("key")
    event_type = document.get("type", default_type)
    check_outside_event(event_id, event_type, key)
    return OutsideEventIn(str(event_id), str(event_type), str(key), document.get("payload"))
