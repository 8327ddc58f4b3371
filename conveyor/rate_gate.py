"""The worker's side of rate limits: a stage's tokens are taken before its handler runs.

A stage that declares `uses=` takes its tokens from its tenant's buckets after its lease
and before its handler; if they are not there yet, the attempt is deferred to the time
they are (its own, one slot after the stage before it) and holds them until then. A
handler that raises `RateLimitedError` drains its tenant's bucket for the `Retry-After`
its service gave, and is deferred the same way. Neither spends an attempt
(docs/architecture.md §4.5).

A stage using nothing limited costs no database round trip: each worker process keeps
each tenant's rates for `RATES_TTL` seconds, so a changed rate applies within that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from conveyor import rates
from conveyor.aggregates import Job, StageState
from conveyor.attempts import Deferred, Raised
from conveyor.caching import TimedCache
from conveyor.store.rates import RateBucketStore
from conveyor.store.tenants import TenantStore
from conveyor.tenancy import Rate
from conveyor.workflows import Stage, StageContext
from conveyor.workflows.failures import RateLimitedError

RATES_TTL = 2.0
# A service that says "retry after 0 s" is still told to wait this long, so a stage that
# keeps being throttled cannot spin.
MIN_RETRY_AFTER = 1.0


class TenantRates:
    """Each tenant's rates in effect, read at most once per `ttl` seconds per process."""

    def __init__(self, tenants: TenantStore, ttl: float = RATES_TTL,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.tenants = tenants
        self._known: TimedCache[str, Mapping[str, Rate]] = TimedCache(ttl, monotonic)

    def __call__(self, organization: str) -> Mapping[str, Rate]:
        return self._known.get(organization,
                               lambda: self.tenants.effective(organization).rates)


class RateGate:
    """Admits a stage attempt when its tenant's rates allow, or says until when it waits."""

    def __init__(self, rates_of: Callable[[str], Mapping[str, Rate]],
                 buckets: RateBucketStore) -> None:
        self.rates_of = rates_of
        self.buckets = buckets

    def admit(self, job: Job, definition: Stage, context: StageContext,
              now: datetime) -> Deferred | Raised | None:
        """None: run the handler now. A stage whose estimate fails is `Raised`.

        Jobs of no organisation (enqueued before tenants) are not limited.
        """
        organization = job.organization
        if not definition.uses or organization is None:
            return None
        run = job.runs[definition.name]
        held = run.deferral if run.state is StageState.DEFERRED else None
        if held is not None:
            if now < held["until"]:
                # An early copy of the message: the timer sends the attempt at its time.
                return Deferred(held["resource"], held["until"])
            limited = [r for r in definition.uses if r in self.rates_of(organization)]
            # Its tokens were taken when it was deferred, unless a Retry-After came since.
            if not limited or not self.buckets.blocked(organization, limited, now):
                return None
        try:
            amounts = definition.amounts(context)
        except Exception as error:
            return Raised(error)
        found = self._take(organization, amounts, now)
        return None if found is None else Deferred(*found)

    def throttled(self, job: Job, definition: Stage, context: StageContext,
                  error: RateLimitedError, now: datetime) -> Deferred:
        """The handler's service said to wait: drain the tenant's bucket, defer the stage.

        The stage then takes its tokens after the drain, so it runs in turn with the
        tenant's other stages, not ahead of them.
        """
        until = now + timedelta(seconds=max(error.retry_after, MIN_RETRY_AFTER))
        found = rates.Hold(error.resource, until)
        organization = job.organization
        if organization is not None:
            rate = self.rates_of(organization).get(error.resource)
            self.buckets.drain(organization, error.resource, rate, until)
            try:
                amounts = definition.amounts(context)
            except Exception:
                amounts = {}  # its estimate fails again when it runs, and fails it then
            later = self._take(organization, amounts, now)
            if later is not None and later.until > until:
                found = later
        return Deferred(found.resource, found.until, ran=True)

    def _take(self, organization: str, amounts: Mapping[str, float],
              now: datetime) -> rates.Hold | None:
        limits = self.rates_of(organization)
        wanted = {r: (limits[r], amount) for r, amount in amounts.items() if r in limits}
        if not wanted:
            return None
        return rates.hold(self.buckets.take(organization, wanted, now), now)
