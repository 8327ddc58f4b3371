"""Restarts under load: PostgreSQL and RabbitMQ, then every Conveyor process in turn."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from conveyor.application import Jobs
from conveyor.settings import Settings
from tests.faults.audit import audit, report, verify_read_models
from tests.faults.cluster import GRACE_SECONDS, Cluster
from tests.faults.load import Load
from tests.servers import PrivatePostgres, PrivateRabbitMQ
from tests.waiting import wait_until

PROCESSES = ("webhooks", "api", "worker", "relay", "projector", "events")


@pytest.fixture
def settings(private_settings: Settings) -> Settings:
    """These tests restart servers: the cluster runs on private ones, never the machine's."""
    return private_settings


# Of the load's attempts (enqueues and webhook deliveries), the share that must be
# accepted: the outages are short, and a run that accepted nothing proves nothing.
ACCEPTED_SHARE = 0.9


def accepted_share(load: Load) -> float:
    """Accepted enqueues and deliveries (2xx), as a share of every attempt the load made."""
    accepted = len(load.accepted) + len(load.delivered)
    attempts = accepted + sum(load.refused.values())
    return accepted / attempts if attempts else 0.0


def _all_logged_jobs_terminal(cluster: Cluster) -> bool:
    return cluster.terminal_jobs() == cluster.count(
        "SELECT count(*) FROM jobs_events WHERE topic LIKE '%:Job.Enqueued'")


def test_every_job_accepted_across_restarts_of_postgresql_and_rabbitmq_completes(
    faulty: Cluster, jobs: Jobs, private_postgres: PrivatePostgres,
    private_rabbitmq: PrivateRabbitMQ,
) -> None:
    # Given workers, a relay and a projector under a steady load
    for name in ("worker", "relay", "projector"):
        faulty.add(name)
    began = time.monotonic()
    with Load(faulty, jobs, "services") as load:
        time.sleep(2)  # the fault schedule: some load before each restart
        # When PostgreSQL restarts
        private_postgres.restart()
        time.sleep(2)
        # And RabbitMQ's app stops and starts again
        with private_rabbitmq.stopped():
            time.sleep(2)
        assert private_rabbitmq.answers()
        time.sleep(2)

    # Then the load was accepted, all but the few refused during the outages
    assert accepted_share(load) >= ACCEPTED_SHARE, (len(load.accepted), dict(load.refused))
    # And every accepted job completes, each stage once, and no attempt was spent on it
    wait_until(lambda: _all_logged_jobs_terminal(faulty), timeout=180, interval=0.5)
    found = audit(faulty, jobs, load.accepted)
    assert found.statuses == Counter({"COMPLETED": len(load.accepted)})
    assert found.failures == 0
    report(
        f"service restarts: pg_ctl restart, then rabbitmqctl stop_app/start_app, under"
        f" load; {len(load.accepted)} jobs accepted ({accepted_share(load):.0%}), refused"
        f" during the outage"
        f" {dict(load.refused)}; jobs {dict(found.statuses)}; effects {found.effects} for"
        f" {2 * len(load.accepted)} stages (re-runs refused by key {found.conflicts});"
        f" failed attempts {found.failures}, recoveries {found.recoveries};"
        f" {time.monotonic() - began:.0f}s"
    )


def test_a_rolling_restart_of_every_process_under_load_loses_and_duplicates_no_job(
    faulty: Cluster, jobs: Jobs,
) -> None:
    # Given every Conveyor process, under load through webhooks and the application
    for name in PROCESSES:
        faulty.add(name)
    faulty.wait_http("webhooks")
    faulty.wait_http("api")
    exits: dict[str, tuple[int, float]] = {}
    with Load(faulty, jobs, "rolling", webhooks=True) as load:
        # When each process in turn gets SIGTERM and is started again
        for name in PROCESSES:
            time.sleep(1.5)  # the fault schedule: load between restarts
            exits[name] = faulty[name].terminate()
            faulty[name].start()
            if name in ("webhooks", "api"):
                faulty.wait_http(name)
        time.sleep(1.5)

    # Then each exited 0 within its grace period
    assert all(code == 0 and took < GRACE_SECONDS for code, took in exits.values()), exits
    # And the load was accepted, webhook deliveries (2xx) included, all but a few refused
    # while a process restarted
    assert load.delivered, dict(load.refused)
    assert accepted_share(load) >= ACCEPTED_SHARE, (
        len(load.accepted), len(load.delivered), dict(load.refused))
    # And every accepted job completed, once: one job a delivery, each stage once
    accepted = load.accepted + load.delivered
    assert len(set(accepted)) == len(accepted)
    wait_until(lambda: _all_logged_jobs_terminal(faulty), timeout=180, interval=0.5)
    assert faulty.count("SELECT count(DISTINCT originator_id) FROM jobs_events"
                        " WHERE topic LIKE '%:Job.Enqueued'") == len(accepted)
    found = audit(faulty, jobs, accepted)
    assert found.statuses == Counter({"COMPLETED": len(accepted)})
    wait_until(lambda: faulty.count("SELECT count(*) FROM jobs WHERE status = 'COMPLETED'")
               == len(accepted), timeout=60, interval=0.5)
    verified = verify_read_models(faulty)
    # And a final SIGTERM stops every process with exit code 0 too
    final = faulty.stop_all()
    assert set(final.values()) == {0}, final
    report(
        "rolling restart: SIGTERM then start, one at a time: "
        + ", ".join(f"{name} exit {code} in {took:.1f}s" for name, (code, took) in exits.items())
        + f"; {len(load.accepted)} jobs enqueued and {len(load.delivered)} webhook deliveries"
        f" accepted under load ({accepted_share(load):.0%}; refused while restarting:"
        f" {dict(load.refused)}); jobs"
        f" {dict(found.statuses)}, no duplicates; effects {found.effects} (re-runs refused by"
        f" key {found.conflicts}); replay verify: {verified}; final SIGTERM exit codes {final}"
    )
