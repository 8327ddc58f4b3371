"""`api_tokens`: the API's tokens, kept as the SHA-256 of each, never the token itself.

A token is 256 random bits, so its plain SHA-256 is as safe to keep as a slow key
derivation of it would be: a slow KDF (bcrypt, scrypt, Argon2) makes guessing a *low-entropy*
password expensive, and nobody can enumerate 2**256 tokens at any speed. It would instead
cost every uncached request tens of milliseconds of CPU (an easy way to exhaust the API),
and its per-token salt would rule out looking a token up by its hash.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import psycopg.errors

from conveyor.access import (
    Grant,
    Scope,
    TokenNameTakenError,
    TokenNotFoundError,
    principal_of,
    token_digest,
)

# A prefix that secret scanners (and people) can recognise, then 256 random bits.
TOKEN_PREFIX = "cvy_"
Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


@dataclass(frozen=True)
class TokenRecord:
    """A stored token as `conveyor tokens list` shows it; the token itself is not kept."""

    grant: Grant
    principal: str
    created_at: datetime
    revoked_at: datetime | None


class TokenStore:
    """Creates, lists, revokes and finds tokens; each call commits on its own.

    `connect` gives a connection with `dict_row` rows in autocommit mode: the API's read
    pool, or a connection of the CLI's own.
    """

    def __init__(self, connect: Connect) -> None:
        self.connect = connect

    def create(self, grant: Grant) -> str:
        """Store a new token for `grant` and return it: the only time it is seen."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        orgs = None if grant.organizations is None else sorted(grant.organizations)
        try:
            with self.connect() as conn:
                conn.execute(
                    "INSERT INTO api_tokens (token_hash, name, scope, organizations)"
                    " VALUES (%s, %s, %s, %s)",
                    (token_digest(token), grant.name, grant.scope.value, orgs))
        except psycopg.errors.UniqueViolation:
            raise TokenNameTakenError(
                f"a token named {grant.name!r} exists: revoke it first, or choose another name"
            ) from None
        return token

    def revoke(self, name: str) -> None:
        """Refuse the unrevoked token `name` from now on (every API within its cache's age)."""
        with self.connect() as conn:
            row = conn.execute(
                "UPDATE api_tokens SET revoked_at = now()"
                " WHERE name = %s AND revoked_at IS NULL RETURNING name", (name,)).fetchone()
        if row is None:
            raise TokenNotFoundError(f"no unrevoked token is named {name!r}")

    def list(self) -> list[TokenRecord]:
        """Every token, revoked ones included, by name and then newest first."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT token_hash, name, scope, organizations, created_at, revoked_at"
                " FROM api_tokens ORDER BY name, created_at DESC").fetchall()
        return [TokenRecord(_grant(row), principal_of(bytes(row["token_hash"])),
                            row["created_at"], row["revoked_at"]) for row in rows]

    def find(self, token: str) -> Grant | None:
        """The grant of an unrevoked token, or None."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT name, scope, organizations FROM api_tokens"
                " WHERE token_hash = %s AND revoked_at IS NULL", (token_digest(token),)
            ).fetchone()
        return None if row is None else _grant(row)


def _grant(row: dict[str, Any]) -> Grant:
    orgs = row["organizations"]
    return Grant(row["name"], Scope(row["scope"]), None if orgs is None else frozenset(orgs))
