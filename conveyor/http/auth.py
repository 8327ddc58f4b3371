"""Bearer-token authentication with read and write scopes."""

from __future__ import annotations

import hashlib
import hmac

import falcon

OPEN_PREFIXES = ("/health/", "/metrics", "/openapi.json", "/dashboard/")
# The dashboard's page itself: it holds no data, and asks for a token before it reads any.
OPEN_PATHS = frozenset({"/"})


class BearerAuth:
    """Falcon middleware: GETs need a read token, other methods a write token.

    A write token may also read, whether or not the read tokens list it.
    """

    def __init__(self, read_tokens: frozenset[str], write_tokens: frozenset[str]) -> None:
        self.read_tokens = read_tokens | write_tokens
        self.write_tokens = write_tokens

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path.startswith(OPEN_PREFIXES) or req.path in OPEN_PATHS:
            return
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise falcon.HTTPUnauthorized(
                title="Authentication required",
                description="Send an API token as 'Authorization: Bearer <token>'.",
                challenges=["Bearer"],
            )
        needed = self.read_tokens if req.method in ("GET", "HEAD") else self.write_tokens
        if not _contains(needed, token):
            if _contains(self.read_tokens, token):
                raise falcon.HTTPForbidden(
                    title="Write scope required", description="This token may only read."
                )
            raise falcon.HTTPUnauthorized(
                title="Invalid token", description="The API token is not known.",
                challenges=["Bearer"],
            )
        # Who asked, for the events a command appends, without storing the token itself.
        req.context.principal = f"token:{hashlib.sha256(token.encode()).hexdigest()[:12]}"
        req.context.scopes = ["read", "write"] if _contains(self.write_tokens, token) else ["read"]


def _contains(tokens: frozenset[str], token: str) -> bool:
    # Compare against every token, in constant time each, so timing says nothing.
    found = False
    for candidate in tokens:
        found |= hmac.compare_digest(candidate.encode(), token.encode())
    return found


