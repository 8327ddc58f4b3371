"""The query-parameter checks Falcon does not make; anything malformed is a 400 with a reason.

Integers come from Falcon's `req.get_param_as_int(..., min_value=, max_value=)` and job ids
from the `{job_id:uuid}` route converter; what is left is text without control characters,
the status vocabulary, ISO 8601 times, and this API's own cursors.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import falcon
import orjson

from conveyor.aggregates import Status

MAX_TEXT = 200
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def bad(name: str, why: str) -> falcon.HTTPInvalidParam:
    """The 400 Falcon's own parameter getters answer, so every parameter fails alike."""
    return falcon.HTTPInvalidParam(why, name)


def text(req: falcon.Request, name: str) -> str | None:
    """A single plain-text parameter: no control characters, at most MAX_TEXT long."""
    value = req.params.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        raise bad(name, "Given more than once.")
    if not value or len(value) > MAX_TEXT:
        raise bad(name, f"Must be 1 to {MAX_TEXT} characters.")
    if any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise bad(name, "Must not contain control characters.")
    return value


def status(req: falcon.Request) -> str | None:
    value = text(req, "status")
    if value is not None and value.upper() not in Status.__members__:
        raise bad("status", f"Must be one of {', '.join(Status.__members__)}.")
    return None if value is None else value.upper()


def timestamp(req: falcon.Request, name: str) -> datetime | None:
    """An ISO 8601 date or time; without an offset it is taken as UTC."""
    value = text(req, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad(name, "Must be an ISO 8601 date or time.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise bad(name, "Out of range.") from None


def choice(req: falcon.Request, name: str, choices: tuple[str, ...]) -> str:
    value = text(req, name)
    if value is None:
        return choices[0]
    if value not in choices:
        raise bad(name, f"Must be one of {', '.join(choices)}.")
    return value


def encode_cursor(created_at: datetime, job: UUID, order: str) -> str:
    """An opaque cursor: where the page ended, and in which order it was read."""
    raw = orjson.dumps([created_at.isoformat(), str(job), order])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor(req: falcon.Request, order: str) -> tuple[datetime, UUID] | None:
    value = text(req, "cursor")
    if value is None:
        return None
    try:
        decoded: Any = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        at, job, cursor_order = decoded
        parsed = datetime.fromisoformat(at)
        if cursor_order != order or parsed.tzinfo is None:
            raise ValueError
        return parsed, UUID(job)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise bad("cursor", "Not a cursor this API gave for this order.") from None
