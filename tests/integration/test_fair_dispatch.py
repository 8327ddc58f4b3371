"""Fair dispatch on the real PostgreSQL and RabbitMQ: held and in-flight work outlives the relay."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta

import dramatiq
import falcon.testing
import psycopg
import pytest

from conveyor.aggregates import Classification, Job, Status
from conveyor.application import Jobs
from conveyor.bootstrap import build_jobs, build_relay, build_worker_broker
from conveyor.http.api import create_app
from conveyor.relay.relay import Relay
from conveyor.settings import Settings
from conveyor.store import datastore_of
from conveyor.store.dispatches import DispatchStore, TenantLoad
from conveyor.store.tenants import TenantStore
from conveyor.tenancy import InvalidTenantSettingError, TenantSettings
from tests.faults.audit import peak_running
from tests.waiting import wait_until

STAGES = 5  # the code-review workflow without its AST analysis
READ = {"Authorization": "Bearer read-token"}
ADMIN = {"Authorization": "Bearer admin-token"}


def trigger(n: int) -> dict[str, str]:
    return {"platform": "github", "repository": "acme/api", "pull_request": str(n),
            "head_commit": f"sha{n}", "base_branch": "main"}


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return dataclasses.replace(settings, relay_poll_seconds=0.1)


@pytest.fixture
def jobs_(fast: Settings) -> Iterator[Jobs]:
    jobs = build_jobs(fast)
    yield jobs
    jobs.close()


def tenants(jobs: Jobs, settings: Settings) -> TenantStore:
    return TenantStore(datastore_of(jobs).get_connection, settings.tenant_defaults)


def loads(jobs: Jobs) -> list[TenantLoad]:
    with datastore_of(jobs).transaction(commit=False) as curs:
        return DispatchStore.loads(curs)


def started(relay: Relay) -> threading.Thread:
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    wait_until(relay.is_active.is_set, timeout=10)
    return thread


def stopped(relay: Relay, thread: threading.Thread) -> None:
    relay.stop()
    thread.join(10)
    relay.close()


@pytest.fixture
def worker(fast: Settings, jobs_: Jobs) -> Iterator[dramatiq.Worker]:
    broker = build_worker_broker(fast, lambda: jobs_)
    worker = dramatiq.Worker(broker, worker_threads=4,
                             worker_timeout=100)
    yield worker
    worker.stop()
    broker.close()


def test_a_restarted_relay_rebuilds_its_held_queue_and_counts_and_never_exceeds_the_limit(
    fast: Settings, jobs_: Jobs, worker: dramatiq.Worker
) -> None:
    # Given acme limited to 2 stages at once, 6 of its jobs and 2 of another organisation's
    tenants(jobs_, fast).put("acme", TenantSettings(max_running=2))
    acme = [jobs_.enqueue("code_review", f"a{n}", trigger(n), organization="acme").job_id
            for n in range(6)]
    other = [jobs_.enqueue("code_review", f"o{n}", trigger(n), organization="other").job_id
             for n in range(2)]

    # When a relay relays them, with no worker running yet
    first = build_relay(fast, jobs_)
    thread = started(first)
    wait_until(lambda: first.sent == 4)
    stopped(first, thread)

    # Then 2 of acme's first stages were sent and 4 are held, the other's 2 were sent
    assert loads(jobs_) == [TenantLoad("acme", 2, 4), TenantLoad("other", 2, 0)]

    # When another relay takes over, still with no worker
    second = build_relay(fast, jobs_)
    thread = started(second)
    second.stopping.wait(0.5)  # a few polls: it must send nothing, not prove it eventually does

    # Then it sends again the 4 in flight (their messages might not have gone out; a copy
    # of a running attempt is a no-op), and none of the held: its counts came from the table
    assert second.sent == 4
    assert loads(jobs_) == [TenantLoad("acme", 2, 4), TenantLoad("other", 2, 0)]

    # When workers run
    worker.start()

    # Then every job completes, acme's never more than 2 at once, and nothing is left held
    wait_until(lambda: all(jobs_.get(j).status is Status.COMPLETED for j in acme + other),
               timeout=60)
    stopped(second, thread)
    assert peak_running(jobs_, acme)[0] == 2
    assert loads(jobs_) == []
    assert second.sent == 6 * STAGES + 2 * STAGES


def test_max_running_zero_holds_the_tenants_work_until_it_is_raised(
    fast: Settings, jobs_: Jobs, worker: dramatiq.Worker
) -> None:
    # Given a paused tenant (max-running 0) with two jobs, and workers running
    store = tenants(jobs_, fast)
    store.put("paused", TenantSettings(max_running=0))
    job_ids = [jobs_.enqueue("code_review", f"p{n}", trigger(n), organization="paused").job_id
               for n in range(2)]
    worker.start()
    relay = build_relay(fast, jobs_)
    thread = started(relay)

    # When the relay has followed the log
    wait_until(lambda: loads(jobs_) == [TenantLoad("paused", 0, 2)])

    # Then its work is held, not failed, and the jobs wait
    assert relay.sent == 0
    assert {jobs_.get(j).status for j in job_ids} == {Status.PENDING}
    # And the API says which stage is held, and the tenant's running, limit and held
    client = falcon.testing.TestClient(
        create_app(fast, lambda: jobs_, amqp_check=lambda: None))
    shown = client.simulate_get(f"/workflow-queue/jobs/{job_ids[0]}", headers=READ)
    assert shown.json["held_stages"] == ["validate"], shown.text
    tenants_shown = client.simulate_get("/workflow-queue/tenants", headers=ADMIN)
    assert tenants_shown.json["dispatch"] == [
        {"organization": "paused", "running": 0, "max_running": 0, "held": 2}]

    # When the limit is raised at runtime, with no new event
    store.put("paused", TenantSettings(max_running=1))

    # Then the relay notices within polls, and the jobs complete
    wait_until(lambda: all(jobs_.get(j).status is Status.COMPLETED for j in job_ids),
               timeout=60)
    stopped(relay, thread)
    assert peak_running(jobs_, job_ids)[0] == 1


def test_a_jobs_own_priority_is_recorded_and_one_out_of_range_is_refused(jobs_: Jobs) -> None:
    raised = jobs_.enqueue("code_review", "raised", trigger(1), organization="acme",
                           priority=90).job_id
    assert jobs_.get(raised).priority == 90
    with pytest.raises(InvalidTenantSettingError):
        jobs_.enqueue("code_review", "too-high", trigger(2), priority=101)
    assert jobs_.recorder.max_notification_id() == 1


def test_a_retry_timer_of_a_cancelled_job_dispatches_nothing_and_holds_no_slot(
    fast: Settings, jobs_: Jobs,
) -> None:
    # Given a job whose first stage failed with a retry an hour away, then was cancelled
    job_id = jobs_.enqueue("code_review", "r", trigger(1), organization="acme").job_id
    now = jobs_.clock()

    def fail(job: Job) -> None:
        job.start_stage("validate", 1, at=now)
        job.fail_stage("validate", 1, Classification.RETRYABLE, "boom", at=now,
                       retry_at=now + timedelta(hours=1))

    jobs_.update(job_id, fail)
    jobs_.cancel(job_id, reason="no longer wanted", by="test")
    relay = build_relay(fast, jobs_)
    assert fast.database_url
    try:
        with psycopg.connect(fast.database_url, autocommit=True) as conn:
            relay.relay_batch(conn)
            # When the retry's timer falls due
            conn.execute("UPDATE relay_timers SET due_at = now() - interval '1 second'")
            assert relay.fire_due_timers(conn) == 1
    finally:
        relay.close()

    # Then nothing is sent and nothing stays in flight for acme
    assert relay.sent == 0
    assert loads(jobs_) == []
