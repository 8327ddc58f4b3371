"""The long outage: RabbitMQ stopped for 3 minutes under load, and afterwards every job completes.

Three minutes outlast Dramatiq's retries of a message whose database work failed, so a message
may be dead-lettered and its stage never started: the relay dispatches such a stage again
(docs/architecture.md §4.3), here after 20 s instead of the default 5 minutes, to keep the
test short. The broker is a private one (tests/servers.py), never the machine's.
"""

from __future__ import annotations

import time
from collections import Counter
from uuid import UUID

import pytest

from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.settings import Settings
from tests.faults.audit import audit, report
from tests.faults.cluster import Cluster
from tests.faults.conftest import (  # noqa: F401  (the fault tier's fixtures)
    faulty,
    jobs,
    private_settings,
    private_template,
)
from tests.faults.load import Load
from tests.servers import PrivateRabbitMQ
from tests.waiting import wait_until

OUTAGE_SECONDS = 180.0
REDISPATCH_AFTER = "20"
LEASE_GRACE = "30"


@pytest.fixture
def settings(private_settings: Settings) -> Settings:  # noqa: F811
    """This test stops RabbitMQ: the cluster runs on private servers, never the machine's."""
    return private_settings


def finished(cluster: Cluster, job_ids: list[UUID]) -> int:
    """How many of these jobs have ended."""
    return cluster.count(
        "SELECT count(DISTINCT originator_id) FROM jobs_events WHERE originator_id = ANY(%s)"
        " AND topic ~ ':Job\\.(Completed|Failed|Cancelled)$'", (job_ids,))


def test_rabbitmq_down_for_3_minutes_under_load_every_accepted_job_completes_each_stage_once(
    faulty: Cluster, jobs: Jobs, private_rabbitmq: PrivateRabbitMQ,  # noqa: F811
) -> None:
    # Given a cluster whose relay re-dispatches a stage lost for 20 s, and a steady trickle
    # of jobs and webhook deliveries
    faulty.add("relay", CONVEYOR_REDISPATCH_AFTER_SECONDS=REDISPATCH_AFTER)
    for name in ("webhooks", "api", "projector"):
        faulty.add(name)
    # No worker is killed here, so its leases last as in production: the fault tier's 1 s
    # grace would let the burst after the outage, with 2 s stages on this machine, outlast a
    # lease, and a duplicate copy (the relay re-sends what RabbitMQ had not confirmed) take it.
    for worker in ("worker-a", "worker-b"):
        faulty.add(worker, "worker", CONVEYOR_LEASE_GRACE_SECONDS=LEASE_GRACE)
    faulty.wait_http("webhooks")

    with Load(faulty, jobs, "outage", webhooks=True, interval=0.25) as load:
        wait_until(lambda: faulty.terminal_jobs() >= 10, timeout=60, interval=0.2)

        # When RabbitMQ stops for 3 minutes while jobs and deliveries go on arriving
        with private_rabbitmq.stopped():
            began = time.monotonic()
            finished_before = faulty.terminal_jobs()
            time.sleep(OUTAGE_SECONDS)
            during = len(load.accepted) + len(load.delivered)
        outage = time.monotonic() - began
        time.sleep(5)

    # Then every accepted job completes once RabbitMQ is back, each stage's outcome recorded
    # once and its handler's effect made once
    accepted = load.accepted + load.delivered
    drain = time.monotonic()
    # Counted among the accepted: a delivery whose answer timed out may have stored a job too.
    wait_until(lambda: finished(faulty, accepted) == len(accepted), timeout=150, interval=1.0)
    drained = time.monotonic() - drain
    found = audit(faulty, jobs, accepted)
    assert found.statuses == Counter({"COMPLETED": len(accepted)})
    assert found.conflicts == 0, found.twice()
    assert found.effects == 2 * len(load.accepted)
    redispatched = sum(isinstance(e, Job.StageRedispatched)
                       for job_id in accepted for e in found.events[job_id])
    report(
        f"long outage: rabbitmq stopped {outage:.0f} s under load; {len(accepted)} jobs"
        f" accepted ({len(load.delivered)} by webhook, {during} by the outage's end,"
        f" {finished_before} finished before it); all {dict(found.statuses)} {drained:.0f} s"
        f" after; stages re-dispatched {redispatched}, recovered {found.recoveries}, failed"
        f" attempts {found.failures}, handlers run twice {found.conflicts}"
    )
