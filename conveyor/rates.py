"""A tenant's rate limit as a token bucket kept in one timestamp (docs/architecture.md §4.5).

A rate of AMOUNT per PERIOD is a bucket of AMOUNT tokens, refilled at one token every
PERIOD / AMOUNT seconds (its interval). Its whole state is one time, the generic cell
rate algorithm's TAT: the bucket is full at TAT or later and holds (t - TAT + PERIOD) /
interval tokens at an earlier t. Taking n tokens at `now` moves it to
max(TAT, now) + n intervals, in one atomic statement (`conveyor/store/rates.py`), and
the taker's tokens are in the bucket at the new TAT less PERIOD: now, if they fit, or a
later time of the taker's own. Every taker is given its own time, so stages deferred
together wake one slot apart, as fast as the rate refills, never all at once.

The functions here are the arithmetic around that statement: what a take costs, when
its tokens are there, what a `Retry-After` does to the bucket, and which resource holds
a stage back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

from conveyor.tenancy import Rate


class Hold(NamedTuple):
    """A stage held back until `until` by its tenant's bucket of `resource`."""

    resource: str
    until: datetime


def interval(rate: Rate) -> timedelta:
    """How long the bucket takes to refill one token."""
    return timedelta(seconds=rate.seconds / rate.amount)


def cost(rate: Rate, amount: float) -> timedelta:
    """How far taking `amount` tokens moves the bucket's TAT."""
    return timedelta(seconds=amount * rate.seconds / rate.amount)


def tokens_at(rate: Rate, tat: datetime) -> datetime:
    """When the tokens of the take that moved the TAT to `tat` are in the bucket.

    A take larger than the bucket waits until the bucket would have refilled it.
    """
    return tat - timedelta(seconds=rate.seconds)


def drained(rate: Rate | None, until: datetime) -> datetime:
    """The TAT of a bucket emptied until `until` (a service's `Retry-After`).

    The first token after it is there at `until`, then one an interval, with no burst:
    the service has just said the tenant went too fast. With no rate configured the
    bucket only blocks until `until`.
    """
    if rate is None:
        return until
    return until + timedelta(seconds=rate.seconds) - interval(rate)


def hold(taken: Mapping[str, datetime], now: datetime) -> Hold | None:
    """What holds a stage back, given when each resource's tokens are there; None: run now.

    A stage runs when every resource it uses allows it: at the latest of their times.
    """
    if not taken:
        return None
    resource, until = max(taken.items(), key=lambda item: (item[1], item[0]))
    return None if until <= now else Hold(resource, until)
