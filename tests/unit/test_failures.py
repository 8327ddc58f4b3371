"""How a stage's exception is classified: retry it, or fail its job."""

from __future__ import annotations

import json
import urllib.error
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import format_datetime

import pytest

from conveyor.aggregates import Classification
from conveyor.workflows import PermanentError, RetryableError, classify
from conveyor.workflows.failures import HTTPStatusError, StageCancelledError, retry_after

RETRYABLE = Classification.RETRYABLE
PERMANENT = Classification.PERMANENT


class QuotaExceededError(Exception):
    """A custom error Conveyor knows nothing about."""


class FlakyButDeclaredPermanentError(PermanentError, RetryableError):
    """Both kinds at once: the permanent reading must win."""


def decode_error() -> json.JSONDecodeError:
    try:
        json.loads("{")
    except json.JSONDecodeError as error:
        return error
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(PermanentError("bad trigger"), PERMANENT, id="PermanentError"),
        pytest.param(RetryableError("overloaded"), RETRYABLE, id="RetryableError"),
        pytest.param(TimeoutError("slow"), RETRYABLE, id="TimeoutError"),
        pytest.param(ConnectionError("reset"), RETRYABLE, id="ConnectionError"),
        pytest.param(ConnectionRefusedError("refused"), RETRYABLE, id="ConnectionRefusedError"),
        pytest.param(ValueError("bad value"), PERMANENT, id="ValueError"),
        pytest.param(decode_error(), PERMANENT, id="JSONDecodeError-is-a-ValueError"),
        pytest.param(KeyError("head_commit"), PERMANENT, id="KeyError"),
        pytest.param(IndexError("out of range"), PERMANENT, id="IndexError-is-a-LookupError"),
        pytest.param(QuotaExceededError("try later"), RETRYABLE, id="unknown-custom-error"),
        pytest.param(RuntimeError("who knows"), RETRYABLE, id="RuntimeError"),
        pytest.param(OSError("disk"), RETRYABLE, id="OSError"),
        pytest.param(
            FlakyButDeclaredPermanentError(), PERMANENT, id="permanent-wins-over-retryable"
        ),
    ],
)
def test_an_error_is_classified_by_its_type(error: BaseException, expected: Classification) -> None:
    # Given a stage's exception, When it is classified, Then its type decides
    assert classify(error) is expected


@pytest.mark.parametrize(
    ("error", "never_retry"),
    [
        pytest.param(TimeoutError("slow"), (TimeoutError,), id="TimeoutError"),
        pytest.param(RetryableError("overloaded"), (RetryableError,), id="RetryableError"),
        pytest.param(QuotaExceededError("quota"), (QuotaExceededError,), id="custom-error"),
        pytest.param(ConnectionRefusedError(), (ConnectionError,), id="subclass-of-listed-type"),
        pytest.param(QuotaExceededError("quota"), (KeyError, Exception), id="one-of-several"),
    ],
)
def test_never_retry_makes_a_retryable_error_permanent(
    error: BaseException, never_retry: tuple[type[BaseException], ...]
) -> None:
    # Given a stage that must not retry `never_retry`, When its error is classified,
    # Then it is permanent whatever its type would say
    assert classify(error) is RETRYABLE
    assert classify(error, never_retry=never_retry) is PERMANENT


def test_never_retry_leaves_other_errors_alone() -> None:
    # Given a stage that must not retry KeyError, When a timeout is classified,
    # Then it stays retryable
    assert classify(TimeoutError("slow"), never_retry=(KeyError,)) is RETRYABLE
    assert classify(ValueError("bad"), never_retry=(KeyError,)) is PERMANENT


class FakeResponse:
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class ClientError(Exception):
    """Shaped like requests' and httpx's HTTPStatusError: the status is on `response`."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = FakeResponse(status, headers)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, Classification.PERMANENT),
        (401, Classification.PERMANENT),
        (404, Classification.PERMANENT),
        (408, Classification.RETRYABLE),
        (409, Classification.PERMANENT),
        (422, Classification.PERMANENT),
        (429, Classification.RETRYABLE),
        (500, Classification.RETRYABLE),
        (502, Classification.RETRYABLE),
        (503, Classification.RETRYABLE),
        (599, Classification.RETRYABLE),
    ],
)
def test_http_errors_are_classified_by_status(status: int, expected: Classification) -> None:
    assert classify(HTTPStatusError(status)) is expected
    assert classify(ClientError(status)) is expected
    assert classify(urllib.error.HTTPError("http://x", status, "x", Message(), None)) is expected


def test_a_stage_cancelled_error_cancels() -> None:
    assert classify(StageCancelledError("not wanted")) is Classification.CANCELLED


def test_retry_after_is_read_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after(HTTPStatusError(429, retry_after=30)) == 30
    assert retry_after(ClientError(429, {"Retry-After": "120"})) == 120
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after(ClientError(503, {"Retry-After": later}), now=now) == 90
    assert retry_after(ClientError(429, {"Retry-After": "soon"})) is None
    assert retry_after(ClientError(500, {"Retry-After": "120"})) is None
    assert retry_after(ValueError("no status")) is None
