"""The interface every Git platform implements, and the helpers they share.

Adding a platform means one module with one class satisfying `Platform`, and one entry in
the registry in `app.py`. Header names reach a platform lower-cased (see `lower_headers`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs

import orjson

from conveyor.errors import ConveyorError
from conveyor.http.webhooks.trigger import Outcome
from conveyor.settings import Settings

Headers = Mapping[str, str]

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


class Platform(Protocol):
    """One Git platform: whether it is configured, who sent a delivery, and what it asks."""

    name: str
    # Request headers kept with the job for audit and replay; never a credential.
    audit_headers: tuple[str, ...]

    def enabled(self, settings: Settings) -> bool:
        """Whether the platform's credentials are set; without them its endpoint is absent."""
        ...

    def verify(self, headers: Headers, body: bytes, settings: Settings) -> None:
        """Raise `UnauthorizedError` unless the raw body came from the platform."""
        ...

    def parse(self, headers: Headers, body: bytes, settings: Settings) -> Outcome:
        """Decide, from a verified delivery, whether to start a review."""
        ...


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lower-cased, so platforms need not care how a server spells them."""
    return {name.lower(): value for name, value in headers.items()}


def same(given: str, expected: str) -> bool:
    """Compare secrets in constant time, so timing does not reveal how much matched."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def check_hmac_sha256(signature: str | None, body: bytes, secret: str) -> None:
    """Raise `UnauthorizedError` unless `signature` is `sha256=<hex HMAC of body>`."""
    if not signature:
        raise UnauthorizedError("The delivery carries no signature.")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not same(signature.strip(), expected):
        raise UnauthorizedError("The signature does not match the body.")


def event_header(headers: Headers, name: str) -> str:
    """The header that names the event; without it the delivery cannot be interpreted."""
    value = headers.get(name.lower(), "").strip()
    if not value:
        raise MalformedDeliveryError(f"The {name} header is missing.")
    return value


def load_payload(headers: Headers, body: bytes, *, form_field: str | None = None) -> dict[str, Any]:
    """Decode a JSON object body (or a form field holding one) from the raw bytes."""
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == FORM and form_field is not None:
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise MalformedDeliveryError("The form body is not valid UTF-8.") from None
        values = fields.get(form_field)
        if not values:
            raise MalformedDeliveryError(f"The form body has no {form_field!r} field.")
        raw: bytes | str = values[0]
    elif media_type == JSON:
        raw = body
    else:
        raise UnsupportedMediaTypeError(f"Content type {media_type or 'none'!r} is not accepted.")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedDeliveryError("The body is not valid UTF-8 JSON.") from None
    if not isinstance(payload, dict):
        raise MalformedDeliveryError("The body is not a JSON object.")
    return payload


def dig(data: Any, *path: str) -> Any:
    """The value at `path` in nested objects, or None where any step is missing."""
    for step in path:
        if not isinstance(data, dict):
            return None
        data = data.get(step)
    return data


def text(value: Any) -> str | None:
    """A JSON scalar as text (numbers included), or None for anything else or empty."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        return str(value) or None
    return None


def required(value: Any, what: str) -> str:
    """A field the trigger cannot do without, as text; its absence is a malformed delivery."""
    found = text(value)
    if found is None:
        raise MalformedDeliveryError(f"The payload lacks {what}.")
    return found


def asks_for_review(comment: Any, settings: Settings) -> bool:
    """Whether a comment's text contains the review command, ignoring case."""
    return isinstance(comment, str) and settings.review_command.casefold() in comment.casefold()


def branch_name(ref: str | None) -> str | None:
    """A branch's short name, from a full ref such as `refs/heads/main`."""
    return ref.removeprefix("refs/heads/") if ref else None


CLOSED = "closed pull requests are not reviewed"


class WebhookError(ConveyorError):
    """Base of the errors a delivery can be refused with."""


class UnauthorizedError(WebhookError):
    """Raised when a delivery's signature, token or credentials are missing or wrong."""


class MalformedDeliveryError(WebhookError):
    """Raised when a verified delivery cannot be read: bad JSON, a missing event or field."""


class UnsupportedMediaTypeError(WebhookError):
    """Raised when a delivery's content type is not one the platform sends."""
