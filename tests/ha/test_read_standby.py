"""The API reads from a streaming standby, says how far behind it is, and falls back to the
primary for a job the standby has not replayed yet."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

import falcon.testing
import psycopg
import pytest

from conveyor.application import Jobs
from conveyor.bootstrap import build_jobs
from conveyor.http.api import create_app as create_api
from conveyor.http.standby import HEADER
from conveyor.migrate import migrate
from conveyor.settings import Settings
from tests.conftest import settings_for
from tests.ha.pg_cluster import PgCluster, pg_cluster
from tests.integration.projections_support import project, trigger
from tests.waiting import wait_until

READ = {"Authorization": "Bearer read-token"}
DATABASE = "conveyor"
# The lag is measured at most once every 0.25 s (conveyor/http/standby.py).
CACHE_SECONDS = 0.25


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    with pg_cluster() as found:
        with psycopg.connect(found.primary.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        migrate(found.multi_host_url(DATABASE))
        yield found


@pytest.fixture
def settings(cluster: PgCluster) -> Settings:
    return dataclasses.replace(
        settings_for(cluster.multi_host_url(DATABASE), f"conveyor-test-{uuid.uuid4().hex[:8]}"),
        read_database_url=cluster.standby_url(DATABASE))


@pytest.fixture
def jobs(settings: Settings) -> Iterator[Jobs]:
    app = build_jobs(settings)
    yield app
    app.close()


def _standby(cluster: PgCluster, sql: str, *args: Any) -> Any:
    with psycopg.connect(cluster.standby_url(DATABASE), autocommit=True) as conn:
        row = conn.execute(sql, args).fetchone()
        return row[0] if row else None


def _lag(answer: Any) -> float:
    return float(answer.headers[HEADER])


def test_reads_carry_the_standbys_lag_and_a_job_it_lacks_is_read_from_the_primary(
    cluster: PgCluster, settings: Settings, jobs: Jobs,
) -> None:
    api = falcon.testing.TestClient(create_api(settings, lambda: jobs, amqp_check=lambda: None))
    first = jobs.enqueue("code_review", "standby:1", trigger(1)).job_id
    project(settings)
    wait_until(cluster.replayed, timeout=30)

    # Given a caught-up standby, a read of it says 0 behind
    shown = api.simulate_get(f"/workflow-queue/jobs/{first}", headers=READ)
    assert (shown.status_code, shown.json["view"], _lag(shown)) == (200, "projection", 0.0)

    # When the standby stops replaying and the primary goes on writing
    _standby(cluster, "SELECT pg_wal_replay_pause()")
    replayed_at = time.time()
    last_replay = _standby(cluster, "SELECT extract(epoch FROM pg_last_xact_replay_timestamp())")
    second = jobs.enqueue("code_review", "standby:2", trigger(2)).job_id
    project(settings)
    wait_until(lambda: _standby(cluster, "SELECT pg_last_wal_receive_lsn() >"
                                         " pg_last_wal_replay_lsn()"), timeout=30)
    wait_until(lambda: time.time() - replayed_at > 1.0, timeout=5)

    # Then reads say how far behind it is: the age of the last transaction it replayed
    listed = api.simulate_get("/workflow-queue/jobs", headers=READ)
    expected = time.time() - float(last_replay)
    assert listed.status_code == 200
    assert [job["job_id"] for job in listed.json["jobs"]] == [str(first)]
    assert expected - CACHE_SECONDS - 0.5 <= _lag(listed) <= expected + 0.5, (
        _lag(listed), expected)
    ready = api.simulate_get("/health/ready")
    assert ready.status_code == 200
    assert ready.json["standby_lag_seconds"] == pytest.approx(_lag(listed), abs=1.0)
    assert _lag(ready) == pytest.approx(_lag(listed), abs=1.0)

    # And the job the standby has not replayed is read from the primary's read model
    assert _standby(cluster, "SELECT count(*) FROM jobs WHERE job_id = %s", second) == 0
    fresh = api.simulate_get(f"/workflow-queue/jobs/{second}", headers=READ)
    assert (fresh.status_code, fresh.json["job_id"], fresh.json["view"]) == (
        200, str(second), "projection")
    history = api.simulate_get(f"/workflow-queue/jobs/{second}/history", headers=READ)
    assert history.status_code == 200
    assert [event["type"] for event in history.json["events"]][:1] == ["Enqueued"]

    # And once it replays again, with the primary idle, it is 0 behind however old its
    # last replayed transaction grows
    _standby(cluster, "SELECT pg_wal_replay_resume()")
    wait_until(cluster.replayed, timeout=30)
    resumed_at = time.time()
    wait_until(lambda: time.time() - resumed_at > 1.0, timeout=5)
    idle = api.simulate_get(f"/workflow-queue/jobs/{second}", headers=READ)
    assert (idle.status_code, idle.json["view"], _lag(idle)) == (200, "projection", 0.0)
