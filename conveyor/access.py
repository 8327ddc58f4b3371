"""Who may do what through the API: scopes, and the grant a token carries.

Pure values: the token store (`conveyor/store/tokens.py`) and the HTTP auth middleware
(`conveyor/http/auth.py`) both speak them, and the CLI parses scopes with `parse_scope`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from conveyor.errors import ConveyorError

TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ORGANIZATION = re.compile(r"[^\s/\x00-\x1f\x7f]{1,200}")


class Scope(StrEnum):
    """What a token may do; each scope includes the ones before it."""

    READ = "read"  # GET and HEAD
    WRITE = "write"  # also cancel, retry and outside events
    ADMIN = "admin"  # also tenant settings and tokens

    def includes(self, other: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(other)

    def covered(self) -> list[str]:
        """This scope and every scope it includes, weakest first."""
        return [s.value for s in Scope if self.includes(s)]


@dataclass(frozen=True)
class Grant:
    """What one token grants: its name, scope, and organisations (None: all of them)."""

    name: str
    scope: Scope
    organizations: frozenset[str] | None


def principal_of(digest: bytes) -> str:
    """Who asked, for the events a command appends: a prefix of the token's SHA-256."""
    return f"token:{digest.hex()[:12]}"


def token_digest(token: str) -> bytes:
    """The SHA-256 a token is stored and looked up by; see `conveyor/store/tokens.py`."""
    return hashlib.sha256(token.encode()).digest()


def parse_scope(value: str) -> Scope:
    """`read`, `write` or `admin`; anything else is an `InvalidScopeError`."""
    try:
        return Scope(value)
    except ValueError:
        raise InvalidScopeError(
            f"unknown scope {value!r}: use one of {', '.join(Scope)}") from None


def parse_token_name(value: str) -> str:
    """A token's name: a letter or digit, then up to 63 letters, digits, `_`, `.` or `-`."""
    return _matching(TOKEN_NAME, value, InvalidTokenNameError(
        f"invalid token name {value!r}: 1 to 64 letters, digits, '_', '.' or '-',"
        " starting with a letter or digit"))


def parse_organization(value: str) -> str:
    """An organisation's name as the platforms spell it: no spaces, slashes or controls."""
    return _matching(ORGANIZATION, value, InvalidOrganizationError(
        f"invalid organization {value!r}: 1 to 200 characters, without spaces,"
        " '/' or control characters"))


def _matching(pattern: re.Pattern[str], value: str, error: InvalidAccessInputError) -> str:
    if not pattern.fullmatch(value):
        raise error
    return value


def parse_grant(name: str, scope: str, organizations: Iterable[str]) -> Grant:
    """A new token's grant from primitive values; no organisations means all of them.

    An admin token manages every organisation's settings and tokens, so it cannot be
    limited to some: a tenant holding one could raise its own limits.
    """
    orgs = frozenset(parse_organization(o) for o in organizations)
    granted = parse_scope(scope)
    if granted is Scope.ADMIN and orgs:
        raise InvalidScopeError(
            "an admin token cannot be limited to organizations: it manages all of them")
    return Grant(parse_token_name(name), granted, orgs or None)


def parse_grant_body(body: object) -> Grant:
    """An API body `{"name", "scope", "organizations"}` into the grant of a new token."""
    if not isinstance(body, dict):
        raise InvalidAccessInputError("body: must be a JSON object")
    unknown = sorted(set(body) - {"name", "scope", "organizations"})
    if unknown:
        raise InvalidAccessInputError(f"{unknown[0]}: is not a token field")
    orgs = body.get("organizations") or []
    for name, value in (("name", body.get("name")), ("scope", body.get("scope"))):
        if not isinstance(value, str):
            raise InvalidAccessInputError(f"{name}: must be a text, not {value!r}")
    if not isinstance(orgs, list) or not all(isinstance(o, str) for o in orgs):
        raise InvalidAccessInputError("organizations: must be a list of texts")
    return parse_grant(body["name"], body["scope"], orgs)


class AccessError(ConveyorError):
    """Base of the errors of tokens and scopes."""


class InvalidAccessInputError(AccessError, ValueError):
    """Raised when a token's name, scope or organisation is malformed; nothing is changed."""


class InvalidScopeError(InvalidAccessInputError):
    """Raised for a scope other than read, write or admin, or an admin scope limited to
    organisations."""


class InvalidTokenNameError(InvalidAccessInputError):
    """Raised for a token name that is empty, too long or holds other characters."""


class InvalidOrganizationError(InvalidAccessInputError):
    """Raised for an organisation name no platform would give."""


class MissingTokenError(AccessError):
    """Raised when a request to a protected route carries no bearer token (401)."""


class UnknownTokenError(AccessError):
    """Raised when a bearer token is not known, or was revoked (401)."""


class ScopeTooSmallError(AccessError):
    """Raised when a known token's scope does not cover the route it asks for (403)."""

    def __init__(self, needed: Scope, granted: Scope) -> None:
        super().__init__(f"This token's scope is {granted}; this needs {needed}.")
        self.needed = needed
        self.granted = granted


class TokenNameTakenError(AccessError):
    """Raised when a token is created under the name of a token that is not revoked (409)."""


class TokenNotFoundError(AccessError, LookupError):
    """Raised when revoking a name no unrevoked token has (404)."""
