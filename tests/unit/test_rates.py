"""Rate limits: a stage's declared `uses=`, and the token bucket's arithmetic around its take."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import rates
from conveyor.aggregates import Job
from conveyor.rate_gate import RateGate, TenantRates
from conveyor.store.rates import RateBucketStore
from conveyor.tenancy import Rate, TenantSettings
from conveyor.workflows import StageContext, Workflow, WorkflowError

NOW = datetime(2025, 1, 1, tzinfo=UTC)
TEN_A_SECOND = Rate(10, "s")
HOURLY = Rate(5000, "h")


def context(trigger: dict[str, object] | None = None) -> StageContext:
    return StageContext(uuid.uuid4(), "s", 1, trigger or {}, {})


# The bucket's arithmetic ------------------------------------------------------------------


def test_a_token_costs_the_period_divided_by_the_amount() -> None:
    assert rates.interval(TEN_A_SECOND) == timedelta(milliseconds=100)
    assert rates.cost(TEN_A_SECOND, 3) == timedelta(milliseconds=300)
    assert rates.cost(HOURLY, 1) == timedelta(seconds=0.72)


def test_a_full_bucket_gives_its_whole_amount_at_once_and_then_one_an_interval() -> None:
    # Given a full bucket of 10/s (its TAT in the past), taken from 12 times at one instant
    tat = NOW - timedelta(minutes=1)
    times = []
    for _ in range(12):
        tat = max(tat, NOW) + rates.cost(TEN_A_SECOND, 1)  # the store's atomic update
        times.append(rates.tokens_at(TEN_A_SECOND, tat))

    # Then the first 10 fit now, and the 11th and 12th each wait one more interval
    assert times[:10] == [NOW - timedelta(milliseconds=900 - 100 * i) for i in range(10)]
    assert all(t <= NOW for t in times[:10])
    assert times[10:] == [NOW + timedelta(milliseconds=100), NOW + timedelta(milliseconds=200)]


def test_a_take_larger_than_the_bucket_waits_until_it_would_have_refilled_it() -> None:
    # Given a full bucket of 10/s and a take of 25 tokens
    tat = NOW + rates.cost(TEN_A_SECOND, 25)

    # Then its tokens are there once 15 more than the bucket holds have refilled
    assert rates.tokens_at(TEN_A_SECOND, tat) == NOW + timedelta(seconds=1.5)


def test_a_drained_bucket_gives_its_first_token_at_the_retry_time_then_one_an_interval() -> None:
    until = NOW + timedelta(seconds=30)
    tat = rates.drained(TEN_A_SECOND, until)

    first = tat + rates.cost(TEN_A_SECOND, 1)
    second = first + rates.cost(TEN_A_SECOND, 1)
    assert rates.tokens_at(TEN_A_SECOND, first) == until
    assert rates.tokens_at(TEN_A_SECOND, second) == until + timedelta(milliseconds=100)


def test_a_drained_bucket_without_a_rate_only_blocks_until_the_retry_time() -> None:
    until = NOW + timedelta(seconds=30)
    assert rates.drained(None, until) == until


def test_the_latest_resource_holds_a_stage_back() -> None:
    later = NOW + timedelta(seconds=5)
    assert rates.hold({"github_api": NOW + timedelta(seconds=1), "llm_tokens": later}, NOW) == (
        rates.Hold("llm_tokens", later))


def test_a_stage_whose_tokens_are_all_there_is_not_held() -> None:
    assert rates.hold({"github_api": NOW, "llm_tokens": NOW - timedelta(seconds=1)}, NOW) is None
    assert rates.hold({}, NOW) is None


# Declaring what a stage uses --------------------------------------------------------------


def test_a_stage_declares_fixed_and_estimated_amounts() -> None:
    flow = Workflow("w")

    @flow.stage(uses={"github_api": 1, "llm_tokens": lambda ctx: len(ctx.trigger["text"]) * 2})
    def review(ctx: StageContext) -> None:
        return None

    assert flow["review"].amounts(context({"text": "abcd"})) == {
        "github_api": 1.0, "llm_tokens": 8.0}


def test_a_stage_uses_nothing_unless_it_says_so_and_a_zero_estimate_uses_nothing() -> None:
    flow = Workflow("w")
    flow.stage("plain")(lambda ctx: None)
    flow.stage("maybe", uses={"llm_tokens": lambda ctx: 0})(lambda ctx: None)

    assert flow["plain"].uses == {}
    assert flow["plain"].amounts(context()) == {}
    assert flow["maybe"].amounts(context()) == {}


@pytest.mark.parametrize("uses", [{"github api": 1}, {"github_api": -1}, {"github_api": "1"},
                                  {"github_api": float("inf")}, {"github_api": True}])
def test_a_malformed_declaration_is_refused_when_the_workflow_is_declared(
    uses: dict[str, object],
) -> None:
    flow = Workflow("w")
    with pytest.raises(WorkflowError):
        flow.stage("s", uses=uses)(lambda ctx: None)  # type: ignore[arg-type]


def test_an_estimate_that_is_not_an_amount_is_an_error_of_the_stage() -> None:
    flow = Workflow("w")
    flow.stage("s", uses={"llm_tokens": lambda ctx: -3})(lambda ctx: None)

    with pytest.raises(WorkflowError, match="llm_tokens"):
        flow["s"].amounts(context())


# The worker's gate, before it talks to PostgreSQL --------------------------------------------


def no_database() -> Any:
    raise AssertionError("the gate talked to PostgreSQL")


def job_of(organization: str | None, plan_stage: str = "s") -> Job:
    return Job(key="k", workflow="w", plan=[{"stage": plan_stage, "after": []}], trigger={},
               organization=organization)


def test_a_stage_that_uses_nothing_never_asks_for_rates_or_buckets() -> None:
    flow = Workflow("w")
    flow.stage("s")(lambda ctx: None)
    gate = RateGate(lambda org: no_database(), RateBucketStore(no_database))

    assert gate.admit(job_of("acme"), flow["s"], context(), NOW) is None


def test_a_stage_whose_tenant_limits_none_of_its_resources_takes_nothing() -> None:
    flow = Workflow("w")
    flow.stage("s", uses={"github_api": 1})(lambda ctx: None)
    gate = RateGate(lambda org: {"llm_tokens": HOURLY}, RateBucketStore(no_database))

    assert gate.admit(job_of("acme"), flow["s"], context(), NOW) is None
    assert gate.admit(job_of(None), flow["s"], context(), NOW) is None


def test_each_process_reads_a_tenants_rates_once_per_ttl() -> None:
    # Given a tenant store that counts its reads, behind the per-process cache
    reads: list[str] = []

    class Tenants:
        def effective(self, organization: str) -> TenantSettings:
            reads.append(organization)
            return TenantSettings(rates={"github_api": HOURLY})

    clock = [0.0]
    rates_of = TenantRates(Tenants(), ttl=2.0, monotonic=lambda: clock[0])  # type: ignore[arg-type]

    # When it is asked many times within the TTL, then after it
    for _ in range(100):
        assert rates_of("acme") == {"github_api": HOURLY}
    clock[0] = 2.5
    rates_of("acme")

    # Then the store was read once per organisation per TTL
    assert reads == ["acme", "acme"]
