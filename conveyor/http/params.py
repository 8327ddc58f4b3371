"""Query parameters in, typed values out; anything malformed is a 400 with a reason."""

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


def bad(name: str, why: str) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(title="Invalid query parameter",
                                 description=f"{name}: {why}")


def text(req: falcon.Request, name: str) -> str | None:
    """A single plain-text parameter: no control characters, at most MAX_TEXT long."""
    value = req.params.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        raise bad(name, "given more than once")
    if not value or len(value) > MAX_TEXT:
        raise bad(name, f"must be 1 to {MAX_TEXT} characters")
    if any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise bad(name, "must not contain control characters")
    return value


def status(req: falcon.Request) -> str | None:
    value = text(req, "status")
    if value is not None and value.upper() not in Status.__members__:
        raise bad("status", f"must be one of {', '.join(Status.__members__)}")
    return None if value is None else value.upper()


def integer(req: falcon.Request, name: str, default: int, low: int, high: int) -> int:
    value = text(req, name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise bad(name, f"must be an integer from {low} to {high}")
    number = int(value)
    if not low <= number <= high:
        raise bad(name, f"must be from {low} to {high}")
    return number


def timestamp(req: falcon.Request, name: str) -> datetime | None:
    """An ISO 8601 date or time; without an offset it is taken as UTC."""
    value = text(req, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad(name, "must be an ISO 8601 date or time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise bad(name, "is out of range") from None


def choice(req: falcon.Request, name: str, choices: tuple[str, ...]) -> str:
    value = text(req, name)
    if value is None:
        return choices[0]
    if value not in choices:
        raise bad(name, f"must be one of {', '.join(choices)}")
    return value


def job_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise falcon.HTTPBadRequest(title="Malformed job id",
                                    description=f"{raw[:64]!r} is not a UUID.") from None


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
        raise bad("cursor", "is not a cursor this API gave for this order") from None
