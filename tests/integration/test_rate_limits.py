"""Rate limits on the real PostgreSQL: the shared bucket, deferrals, and `Retry-After`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import dramatiq
import psycopg
import pytest

from conveyor.actors.broker import version_queue
from conveyor.actors.stages import run_stage
from conveyor.aggregates import AttemptOutcome, StageState
from conveyor.application import Jobs
from conveyor.attempts import Outcome
from conveyor.bootstrap import build_rate_gate
from conveyor.projections.rows import job_row
from conveyor.rate_gate import RateGate
from conveyor.relay.relay import Relay
from conveyor.settings import Settings
from conveyor.store import datastore_of
from conveyor.store.rates import RateBucketStore
from conveyor.store.tenants import TenantStore
from conveyor.tenancy import Rate, TenantSettings
from conveyor.workflows import RateLimitedError, StageContext, Workflow
from tests.integration.test_recovery import Clock

START = Clock().now
TRIGGER = {"platform": "github", "repository": "acme/api", "pull_request": "1",
           "head_commit": "sha1", "base_branch": "main"}

limited = Workflow("limited")
# Jobs whose trigger says so are answered "too many requests, retry after 30 s".
THROTTLED_FOR = 30.0


@limited.stage(uses={"github_api": 1})
def call(ctx: StageContext) -> dict[str, Any]:
    if ctx.trigger.get("throttle"):
        raise RateLimitedError("github_api", THROTTLED_FOR)
    return {"called": True}


@dataclass
class Limits:
    jobs: Jobs
    gate: RateGate
    clock: Clock
    tenants: TenantStore
    settings: Settings

    def enqueue(self, n: int, organization: str = "acme", **trigger: Any) -> UUID:
        return self.jobs.enqueue("limited", f"{organization}-{n}", {**TRIGGER, **trigger},
                                 organization=organization).job_id

    def run(self, job_id: UUID, attempt: int = 1) -> Outcome:
        return run_stage(self.jobs, job_id, "call", attempt, gate=self.gate)

    def one_deferred(self) -> UUID:
        """Run two stages of acme, which its 2/s allows, then a third, which it defers."""
        for n in range(2):
            assert self.run(self.enqueue(n)) == Outcome.COMPLETED
        deferred = self.enqueue(2)
        assert self.run(deferred) == Outcome.DEFERRED
        return deferred

    def tat(self, organization: str = "acme") -> datetime:
        with psycopg.connect(self.settings.require_database_url()) as conn:
            row = conn.execute("SELECT tat FROM rate_buckets WHERE organization = %s"
                               " AND resource = 'github_api'", (organization,)).fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]


@pytest.fixture
def limits(settings: Settings) -> Iterator[Limits]:
    clock = Clock()
    jobs = Jobs(settings.eventsourcing_env(), workflows={"limited": limited}, clock=clock)
    tenants = TenantStore(datastore_of(jobs).get_connection, settings.tenant_defaults)
    for organization in ("acme", "globex"):
        tenants.put(organization, TenantSettings(rates={"github_api": Rate(2, "s")}))
    yield Limits(jobs, build_rate_gate(settings, jobs), clock, tenants, settings)
    jobs.close()


def test_concurrent_takers_in_threads_are_each_given_a_token_of_their_own(
    limits: Limits,
) -> None:
    # Given a bucket of 10/s and 8 threads taking 25 tokens each at the same instant
    buckets = RateBucketStore(datastore_of(limits.jobs).get_connection)
    rate = Rate(10, "s")
    times: list[datetime] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(25):
            found = buckets.take("acme", {"github_api": (rate, 1)}, START)
            with lock:
                times.append(found["github_api"])

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then the 200 tokens are 200 distinct slots one interval apart: the bucket's 10 at
    # once, then one every 100 ms, none given twice and none skipped
    assert sorted(times) == [START - timedelta(milliseconds=900) + timedelta(milliseconds=100 * k)
                             for k in range(200)]
    assert sum(t <= START for t in times) == 10


def test_a_stage_over_its_tenants_rate_is_deferred_unstarted_and_runs_at_its_time(
    limits: Limits,
) -> None:
    # Given acme may call github_api twice a second, and three of its jobs are ready
    first, second, third = (limits.enqueue(n) for n in range(3))

    # When a worker runs each at the same instant
    outcomes = [limits.run(job_id) for job_id in (first, second, third)]

    # Then two run, and the third is deferred half a second without starting an attempt
    assert outcomes == [Outcome.COMPLETED, Outcome.COMPLETED, Outcome.DEFERRED]
    job = limits.jobs.get(third)
    run = job.runs["call"]
    assert (run.state, run.attempt, run.failures) == (StageState.DEFERRED, 1, 0)
    until = START + timedelta(seconds=0.5)
    assert run.deferral == {"resource": "github_api", "until": until}
    assert job.attempt_log == []
    assert job_row(job)["waiting_for"] == [{"kind": "rate_limit", "stage": "call",
                                            "resource": "github_api",
                                            "until": until.isoformat()}]
    tat = limits.tat()

    # When an early copy of its message comes, it keeps its place and takes nothing more
    limits.clock.now = START + timedelta(seconds=0.2)
    assert limits.run(third) == Outcome.DEFERRED
    assert limits.jobs.get(third).runs["call"].deferral == {"resource": "github_api",
                                                            "until": until}

    # And when its time comes it runs as attempt 1 on the tokens it took when deferred
    limits.clock.now = until
    assert limits.run(third) == Outcome.COMPLETED
    assert [(a.attempt, a.outcome) for a in limits.jobs.get(third).attempt_log] == [
        (1, AttemptOutcome.COMPLETED)]
    assert limits.tat() == tat


def test_a_stage_of_a_tenant_without_that_rate_is_not_limited(limits: Limits) -> None:
    # Given an organisation that set no rate for github_api
    job_ids = [limits.enqueue(n, organization="initech") for n in range(5)]

    # Then all its stages run at once
    assert [limits.run(job_id) for job_id in job_ids] == [Outcome.COMPLETED] * 5


def test_a_retry_after_drains_the_tenants_bucket_so_its_other_stages_wait_too(
    limits: Limits,
) -> None:
    # Given a stage whose service answers "retry after 30 s"
    throttled = limits.enqueue(0, throttle=True)

    # When it runs
    assert limits.run(throttled) == Outcome.DEFERRED

    # Then it is deferred past the Retry-After with its attempt unspent
    job = limits.jobs.get(throttled)
    run = job.runs["call"]
    retry_at = START + timedelta(seconds=THROTTLED_FOR)
    assert (run.state, run.attempt, run.failures, run.retries) == (StageState.DEFERRED, 1, 0, 0)
    assert run.deferral == {"resource": "github_api", "until": retry_at}
    assert [(a.attempt, a.outcome) for a in job.attempt_log] == [(1, AttemptOutcome.DEFERRED)]

    # And the tenant's next stages wait behind it, one slot apart
    later = [limits.enqueue(n) for n in (1, 2)]
    assert [limits.run(job_id) for job_id in later] == [Outcome.DEFERRED] * 2
    assert [limits.jobs.get(j).runs["call"].deferral for j in later] == [
        {"resource": "github_api", "until": retry_at + timedelta(seconds=0.5 * k)}
        for k in (1, 2)]

    # While another tenant with the same rate is not held back
    assert limits.run(limits.enqueue(3, organization="globex")) == Outcome.COMPLETED


def test_a_stage_deferred_before_a_retry_after_waits_for_it_when_its_time_comes(
    limits: Limits,
) -> None:
    # Given a stage deferred to 0.5 s by the rate
    deferred = limits.one_deferred()
    # And at 1 s, another stage's service answered "retry after 30 s"
    limits.clock.now = START + timedelta(seconds=1)
    assert limits.run(limits.enqueue(3, throttle=True)) == Outcome.DEFERRED
    retry_at = limits.clock.now + timedelta(seconds=THROTTLED_FOR)

    # When the deferred stage's message comes, past its time but within the Retry-After
    assert limits.run(deferred) == Outcome.DEFERRED

    # Then it is deferred again, behind the throttled one, still as attempt 1
    run = limits.jobs.get(deferred).runs["call"]
    assert run.attempt == 1
    assert run.deferral == {"resource": "github_api",
                            "until": retry_at + timedelta(seconds=0.5)}
    assert limits.jobs.get(deferred).attempt_log == []


def test_the_relay_times_a_deferred_attempt_and_sends_the_same_attempt_when_due(
    limits: Limits,
) -> None:
    # Given a stage deferred by its tenant's rate
    deferred = limits.one_deferred()
    until = limits.jobs.get(deferred).runs["call"].deferral["until"]  # type: ignore[index]
    broker = dramatiq.brokers.stub.StubBroker()
    relay = Relay(limits.jobs, broker, limits.settings.queue_name,
                  limits.settings.require_database_url(), clock=lambda: until)
    queue = version_queue(limits.settings.queue_name, "limited", limited.version)
    broker.declare_queue(queue)

    with psycopg.connect(limits.settings.require_database_url(), autocommit=True) as conn:
        # When the relay follows the log
        while relay.relay_batch(conn):
            pass
        # Then a dispatch timer holds the same attempt until its time
        timers = conn.execute("SELECT stage, attempt, due_at, kind FROM relay_timers"
                              " WHERE job_id = %s", (deferred,)).fetchall()
        assert timers == [("call", 1, until, "dispatch")]
        sent = relay.sent
        # And at that time attempt 1 is sent again
        assert relay.fire_due_timers(conn) == 1
    assert relay.sent == sent + 1
    sent_to_it = [args for args in (dramatiq.Message.decode(m).args
                                    for m in broker.queues[queue].queue)
                  if args[0] == str(deferred)]
    # (only the timer's: the relay read its enqueue and its deferral in one batch, and fair
    # dispatch sends no attempt whose outcome the same batch holds, docs §3.7)
    assert sent_to_it == [(str(deferred), "call", 1)], sent_to_it
