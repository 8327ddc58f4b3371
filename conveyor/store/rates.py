"""`rate_buckets`: each tenant's token bucket per rate-limited resource, shared by every worker.

A bucket is one row holding its TAT (`conveyor/rates.py` explains the arithmetic). A take
moves the TATs of all the resources a stage uses in one upsert, each row by an exact
amount from the later of its TAT and now, so any number of takers in any number of
processes are served one after another by the row locks, never twice from one token.
Rows are taken in resource order, so two stages using the same resources cannot deadlock.

Takes commit without waiting for the disk flush, as leases do: a database crash can at
worst forget the takes of its last few milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from conveyor import rates
from conveyor.store.leases import UNFLUSHED
from conveyor.store.tokens import Connect
from conveyor.tenancy import Rate

TAKE = (
    f"{UNFLUSHED} INSERT INTO rate_buckets AS b (organization, resource, tat)"
    " SELECT %(organization)s, t.resource, %(now)s::timestamptz + t.cost"
    " FROM unnest(%(resources)s::text[], %(costs)s::interval[]) AS t(resource, cost),"
    " unflushed ORDER BY t.resource"
    " ON CONFLICT (organization, resource) DO UPDATE"
    " SET tat = greatest(b.tat, %(now)s::timestamptz) + (excluded.tat - %(now)s::timestamptz)"
    " RETURNING resource, tat"
)
DRAIN = (
    f"{UNFLUSHED} INSERT INTO rate_buckets AS b (organization, resource, tat, blocked_until)"
    " SELECT %s, %s, %s, %s FROM unflushed ON CONFLICT (organization, resource) DO UPDATE"
    " SET tat = greatest(b.tat, excluded.tat),"
    " blocked_until = greatest(b.blocked_until, excluded.blocked_until)"
)


class RateBucketStore:
    """Takes tokens from, and drains, tenants' buckets; each call commits on its own.

    `connect` gives a connection with `dict_row` rows in autocommit mode.
    """

    def __init__(self, connect: Connect) -> None:
        self.connect = connect

    def take(self, organization: str, wanted: Mapping[str, tuple[Rate, float]],
             now: datetime) -> dict[str, datetime]:
        """Take `amount` tokens of each resource at its rate; when each take's tokens are there.

        The tokens are the taker's whether they are there now or later: a stage deferred
        to that time runs then without taking them again.
        """
        names = sorted(wanted)
        with self.connect() as conn:
            found = conn.execute(TAKE, {
                "organization": organization, "now": now, "resources": names,
                "costs": [rates.cost(*wanted[name]) for name in names],
            }, prepare=True).fetchall()
        return {row["resource"]: rates.tokens_at(wanted[row["resource"]][0], row["tat"])
                for row in found}

    def drain(self, organization: str, resource: str, rate: Rate | None,
              until: datetime) -> None:
        """Empty the bucket until `until`, as a service's `Retry-After` asked."""
        with self.connect() as conn:
            conn.execute(DRAIN, (organization, resource, rates.drained(rate, until), until))

    def blocked(self, organization: str, resources: Iterable[str],
                now: datetime) -> dict[str, datetime]:
        """The resources a `Retry-After` blocks past `now`, and until when."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT resource, blocked_until FROM rate_buckets WHERE organization = %s"
                " AND resource = ANY(%s) AND blocked_until > %s",
                (organization, list(resources), now), prepare=True).fetchall()
        return {row["resource"]: row["blocked_until"] for row in rows}
