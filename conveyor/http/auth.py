"""Bearer-token authentication and scopes: tokens from PostgreSQL, and the development ones.

Tokens created with `conveyor tokens create` are looked up by their SHA-256
(`conveyor/store/tokens.py`) and each answer is kept for at most `CACHE_SECONDS` in the
process, so a revoked token is refused by every API process within that time: a lookup
per token per process every half second, instead of a connection per process held open
to LISTEN (PostgreSQL's 100 connections are already shared by 13 processes), and a bound
that holds even when a notification would have been lost. `docs/architecture.md §9.1`
gives the measured cost.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

import falcon

from conveyor.access import (
    Grant,
    MissingTokenError,
    Scope,
    ScopeTooSmallError,
    UnknownTokenError,
    principal_of,
    token_digest,
)
from conveyor.caching import TimedCache

OPEN_PREFIXES = ("/health/", "/metrics", "/openapi.json", "/dashboard/")
# The dashboard's page itself: it holds no data, and asks for a token before it reads any.
OPEN_PATHS = frozenset({"/"})
CACHE_SECONDS = 0.5
# Unknown tokens are remembered too (a client retrying a bad token costs no query), so
# the cache is emptied when it grows past this.
CACHE_ENTRIES = 10_000

Lookup = Callable[[str], Grant | None]


def development_grants(read: frozenset[str], write: frozenset[str],
                       admin: frozenset[str]) -> dict[str, Grant]:
    """`CONVEYOR_API_{READ,WRITE,ADMIN}_TOKENS` as unscoped grants, the widest scope winning."""
    grants: dict[str, Grant] = {}
    for scope, tokens in ((Scope.READ, read), (Scope.WRITE, write), (Scope.ADMIN, admin)):
        for token in tokens:
            grants[token] = Grant(f"CONVEYOR_API_{scope.value.upper()}_TOKENS", scope, None)
    return grants


class CachedLookup:
    """A token lookup whose answers, found or not, are trusted for `ttl` seconds."""

    def __init__(self, lookup: Lookup, ttl: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lookup = lookup
        self._answers: TimedCache[bytes, Grant | None] = TimedCache(ttl, clock, CACHE_ENTRIES)

    def __call__(self, token: str) -> Grant | None:
        return self._answers.get(token_digest(token), lambda: self.lookup(token))


class BearerAuth:
    """Falcon middleware: who asks (`process_request`), and may they (`process_resource`).

    Sets `req.context.principal` (who asked, for the events a command appends),
    `req.context.scope`, `req.context.organizations` (None: every organisation) and
    `req.context.grant`. A resource may declare the scope it needs as `scope`
    (a `Scope`); otherwise GET and HEAD need read, anything else write.
    """

    def __init__(self, development: Mapping[str, Grant], lookup: Lookup | None = None) -> None:
        self.development = development
        self.lookup = lookup

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path.startswith(OPEN_PREFIXES) or req.path in OPEN_PATHS:
            return
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise MissingTokenError("Send an API token as 'Authorization: Bearer <token>'.")
        grant = self._development(token)
        if grant is None and self.lookup is not None:
            grant = self.lookup(token)
        if grant is None:
            raise UnknownTokenError("The API token is not known, or was revoked.")
        # Who asked, without storing the token itself.
        req.context.principal = principal_of(token_digest(token))
        req.context.grant = grant
        req.context.scope = grant.scope
        req.context.organizations = grant.organizations

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        granted: Scope | None = req.context.get("scope")
        if granted is None:
            return  # an open path
        needed = getattr(resource, "scope", None) or (
            Scope.READ if req.method in ("GET", "HEAD") else Scope.WRITE)
        if not granted.includes(needed):
            raise ScopeTooSmallError(needed, granted)

    def _development(self, token: str) -> Grant | None:
        # Compare against every token, in constant time each, so timing says nothing.
        found = None
        for candidate, grant in self.development.items():
            if hmac.compare_digest(candidate.encode(), token.encode()):
                found = grant
        return found
