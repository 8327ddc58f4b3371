"""Outages of PostgreSQL and RabbitMQ: quick 503s, readiness says why, nothing lost."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from conveyor.application import Jobs
from conveyor.settings import Settings
from tests.faults.audit import audit, report
from tests.faults.cluster import Cluster
from tests.faults.services import READ, deliver, timed
from tests.servers import PrivatePostgres, PrivateRabbitMQ
from tests.waiting import wait_until

QUICK_SECONDS = 2.0


@pytest.fixture
def settings(private_settings: Settings) -> Settings:
    """These tests stop a server: the cluster runs on private ones, never the machine's."""
    return private_settings


def _processes(cluster: Cluster) -> None:
    for name in ("webhooks", "api", "worker", "relay", "projector"):
        cluster.add(name)
    cluster.wait_http("webhooks")
    cluster.wait_http("api")


def test_with_postgresql_stopped_the_http_apps_answer_503_quickly_and_no_attempt_is_burned(
    faulty: Cluster, jobs: Jobs, private_postgres: PrivatePostgres,
) -> None:
    # Given a running cluster, and jobs in flight
    _processes(faulty)
    job_ids = [jobs.enqueue("effects", f"outage:{i}", {"seconds": 0.5}).job_id
               for i in range(40)]
    assert deliver(faulty, 1)[0] == 202
    wait_until(lambda: faulty.leases(), timeout=30, interval=0.05)

    # When PostgreSQL stops
    answers: dict[str, list[tuple[int, float]]] = {"webhook": [], "api": [], "ready": []}
    ready: Any = None
    with private_postgres.stopped():
        for attempt in range(3):
            status, _, took = deliver(faulty, 100 + attempt)
            answers["webhook"].append((status, took))
            status, _, took = timed(f"{faulty.api}/workflow-queue/jobs", headers=READ)
            answers["api"].append((status, took))
            status, ready, took = timed(f"{faulty.api}/health/ready")
            answers["ready"].append((status, took))

    # Then every answer was a quick 503, and readiness named PostgreSQL
    for name, seen in answers.items():
        assert all(status == 503 and took < QUICK_SECONDS for status, took in seen), (name, seen)
    assert "postgresql" in ready["down"]

    # And, once it is back, every accepted job completes without a failed attempt
    wait_until(lambda: faulty.terminal_jobs() == len(job_ids) + 1, timeout=120, interval=0.5)
    found = audit(faulty, jobs, job_ids)
    assert found.statuses == Counter({"COMPLETED": len(job_ids)})
    assert found.failures == 0
    worst = {name: max(took for _, took in seen) for name, seen in answers.items()}
    report(
        "postgresql stopped: webhook, API and readiness answered "
        + ", ".join(f"{name} 503 in at most {took * 1000:.0f} ms" for name, took in worst.items())
        + f"; ready said down={ready['down']}; {len(job_ids) + 1} jobs in flight all"
        f" completed after, {found.failures} stage attempts failed, {found.recoveries}"
        f" recoveries, effects {found.effects}"
    )


def test_with_rabbitmq_stopped_webhooks_are_accepted_and_the_backlog_drains_on_its_return(
    faulty: Cluster, private_rabbitmq: PrivateRabbitMQ,
) -> None:
    # Given a running cluster
    _processes(faulty)

    # When RabbitMQ stops, deliveries still arrive
    accepted = []
    ready: Any = None
    with private_rabbitmq.stopped():
        for number in range(1, 21):
            status, body, _took = deliver(faulty, number)
            assert status == 202, (status, body)
            accepted.append(body["job_id"])
        status, ready, _ = timed(f"{faulty.api}/health/ready")
        assert status == 503
        down_while_stopped = faulty.terminal_jobs()

    # Then readiness named RabbitMQ, and once it is back every accepted job completes
    assert ready["down"] == ["rabbitmq"]
    wait_until(lambda: faulty.terminal_jobs() == len(accepted), timeout=120, interval=0.5)
    statuses = Counter(row[0] for row in faulty.query(
        "SELECT topic FROM jobs_events WHERE topic ~ ':Job\\.(Completed|Failed|Cancelled)$'"))
    assert [topic.rsplit(".", 1)[1] for topic in statuses] == ["Completed"]
    report(
        f"rabbitmq stopped: {len(accepted)} of 20 webhook deliveries accepted (202) while it"
        f" was down, {down_while_stopped} finished during the outage; ready said"
        f" down={ready['down']}; all {len(accepted)} completed after start_app"
    )
