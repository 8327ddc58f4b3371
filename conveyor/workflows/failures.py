"""What a stage's exception means for its job: retry it, fail it, or stop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from conveyor.aggregates import Classification
from conveyor.errors import ConveyorError


class StageError(ConveyorError):
    """Base of the errors a stage handler raises to say how its failure should be treated."""


class RetryableError(StageError):
    """Raised by a handler whose failure is passing (a timeout, an overloaded service)."""


class PermanentError(StageError):
    """Raised by a handler whose failure no retry can fix (invalid input, a missing resource)."""


class StageCancelledError(StageError):
    """Raised by a handler that learns its work is no longer wanted."""


class RateLimitedError(StageError):
    """Raised by a handler whose service said to wait (`429` and its `Retry-After`).

    The stage's tenant's bucket of `resource` is drained for `retry_after` seconds, so
    the tenant's other stages that use it wait too, and the stage is deferred without
    spending an attempt (docs/architecture.md §4.5).
    """

    def __init__(self, resource: str, retry_after: float, message: str = "") -> None:
        super().__init__(message or f"{resource} is rate limited for {retry_after:g} s")
        self.resource = resource
        self.retry_after = max(0.0, float(retry_after))


class HTTPStatusError(StageError):
    """Raised by a handler when a service answered with an error status."""

    def __init__(self, status: int, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message or f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


# Checked in order, by type; the first match wins. Unknown errors are retryable,
# because a transient fault misread as permanent loses work, and the reverse
# costs only the attempt budget.
BY_TYPE: tuple[tuple[type[BaseException], Classification], ...] = (
    (StageCancelledError, Classification.CANCELLED),
    (asyncio.CancelledError, Classification.CANCELLED),
    (PermanentError, Classification.PERMANENT),
    (RetryableError, Classification.RETRYABLE),
    (TimeoutError, Classification.RETRYABLE),
    (ConnectionError, Classification.RETRYABLE),
    (ValueError, Classification.PERMANENT),
    (LookupError, Classification.PERMANENT),
)
# HTTP statuses that are worth another try; other 4xx are the request's own fault.
RETRYABLE_STATUSES = frozenset({408, 429})


def http_status(error: BaseException) -> int | None:
    """The HTTP status an error carries, from our own type or the common HTTP clients'.

    Reads `status`, `status_code` or `code` on the error or on its `response`
    (urllib's HTTPError, requests' and httpx's HTTPStatusError).
    """
    for holder in (error, getattr(error, "response", None)):
        for name in ("status", "status_code", "code"):
            value = getattr(holder, name, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


def classify_status(status: int) -> Classification:
    if status in RETRYABLE_STATUSES or status >= 500:
        return Classification.RETRYABLE
    return Classification.PERMANENT


def classify(
    error: BaseException, never_retry: tuple[type[BaseException], ...] = ()
) -> Classification:
    """Classify a stage's exception; `never_retry` names types its stage must not retry."""
    if isinstance(error, never_retry):
        return Classification.PERMANENT
    status = http_status(error)
    if status is not None and status >= 400:
        return classify_status(status)
    for error_type, classification in BY_TYPE:
        if isinstance(error, error_type):
            return classification
    return Classification.RETRYABLE


def retry_after(error: BaseException, now: datetime | None = None) -> float | None:
    """Seconds a 429 or 503 answer asked us to wait (`Retry-After`), if it said."""
    if isinstance(error, HTTPStatusError) and error.retry_after is not None:
        return max(0.0, error.retry_after)
    if http_status(error) not in (429, 503):
        return None
    value: Any = None
    for holder in (error, getattr(error, "response", None)):
        headers = getattr(holder, "headers", None)
        if headers is not None and hasattr(headers, "get"):
            value = headers.get("Retry-After")
            if value is not None:
                break
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
