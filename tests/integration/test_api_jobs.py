"""The workflow-queue API through Falcon's test client, on the real database."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.inspect
import falcon.testing
import psycopg
import pytest

from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.http.api import create_app
from conveyor.http.openapi import SPEC
from conveyor.settings import Settings
from tests.integration.projections_support import (
    complete_next,
    fail_next,
    project,
    trigger,
    varied_history,
)

READ = {"Authorization": "Bearer read-token"}
WRITE = {"Authorization": "Bearer write-token"}


@pytest.fixture
def client(settings: Settings, jobs: Jobs) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=lambda: None))


def get(client: falcon.testing.TestClient, path: str, **params: Any) -> falcon.testing.Result:
    return client.simulate_get(path, params=params or None, headers=READ)


def test_a_job_is_shown_by_id_and_unknown_or_malformed_ids_are_refused(
    settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    job_id = jobs.enqueue("code_review", "one", trigger(1)).job_id
    complete_next(jobs, job_id)
    project(settings)

    shown = get(client, f"/workflow-queue/jobs/{job_id}")
    assert shown.status_code == 200
    assert shown.json["status"] == "PROCESSING"
    assert shown.json["repository"] == "acme/api" and shown.json["pull_request"] == "1"
    assert shown.json["stages"][0]["status"] == "completed"
    assert get(client, "/workflow-queue/jobs/8d0e6c6c-0000-4000-8000-000000000000"
               ).status_code == 404
    assert get(client, "/workflow-queue/jobs/not-a-uuid").status_code == 400
    assert client.simulate_get(f"/workflow-queue/jobs/{job_id}").status_code == 401


def test_every_filter_narrows_the_list(
    settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    a = jobs.enqueue("code_review", "a", trigger(1, "github", "acme/api")).job_id
    b = jobs.enqueue("code_review", "b", trigger(2, "gitlab", "acme/web")).job_id
    c = jobs.enqueue("code_review", "c", trigger(3, "github", "acme/web")).job_id
    fail_next(jobs, c, retry=False)
    project(settings)
    with psycopg.connect(str(settings.database_url)) as conn:
        created_b = conn.execute("SELECT created_at FROM jobs WHERE job_id = %s", (b,)
                                 ).fetchone()[0]  # type: ignore[index]

    def ids(**params: Any) -> set[str]:
        result = get(client, "/workflow-queue/jobs", **params)
        assert result.status_code == 200, result.text
        return {j["job_id"] for j in result.json["jobs"]}

    assert ids() == {str(a), str(b), str(c)}
    assert ids(status="FAILED") == {str(c)}
    assert ids(status="pending") == {str(a), str(b)}
    assert ids(workflow="code_review") == {str(a), str(b), str(c)}
    assert ids(workflow="other") == set()
    assert ids(platform="gitlab") == {str(b)}
    assert ids(repository="acme/web") == {str(b), str(c)}
    assert ids(repository="acme/web", pull_request="3") == {str(c)}
    assert ids(created_after=created_b.isoformat()) == {str(b), str(c)}
    assert ids(created_before=created_b.isoformat()) == {str(a)}
    assert ids(repository="x' OR '1'='1") == set()


@pytest.mark.parametrize("params", [
    {"status": "SLEEPING"}, {"limit": "0"}, {"limit": "201"}, {"limit": "ten"},
    {"limit": "-1"}, {"cursor": "garbage!"}, {"cursor": "W10"}, {"created_after": "yesterday"},
    {"created_before": "2024-13-45"}, {"order": "sideways"}, {"repository": "a\x00b"},
    {"status": "PENDING' OR 1=1 --"}, {"workflow": "x" * 500},
])
def test_a_bad_query_parameter_is_a_400_with_a_reason(
    client: falcon.testing.TestClient, params: dict[str, str]
) -> None:
    result = get(client, "/workflow-queue/jobs", **params)
    assert result.status_code == 400
    assert result.json["description"]


def test_pagination_walks_a_thousand_jobs_without_gaps_or_repeats(
    settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    plan = jobs.workflows["code_review"].plan()
    made: set[str] = set()
    for start in range(0, 1000, 250):
        batch = [Job(key=f"page-{i}", workflow="code_review", plan=plan, trigger=trigger(i))
                 for i in range(start, start + 250)]
        jobs.save(*batch)
        made |= {str(j.id) for j in batch}
    project(settings)

    for order in ("desc", "asc"):
        seen: list[str] = []
        created: list[str] = []
        cursor = None
        while True:
            params = {"limit": "97", "order": order} | ({"cursor": cursor} if cursor else {})
            page = get(client, "/workflow-queue/jobs", **params).json
            seen += [j["job_id"] for j in page["jobs"]]
            created += [j["created_at"] for j in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 1000
        assert set(seen) == made
        assert created == sorted(created, reverse=order == "desc")


def test_history_lists_every_event_and_stage_attempt(
    settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    job_id = jobs.enqueue("code_review", "h", trigger(1)).job_id
    fail_next(jobs, job_id, retry=True)
    project(settings)

    history = get(client, f"/workflow-queue/jobs/{job_id}/history").json
    events = [type(e).__name__ for e in jobs.repository.event_store.get(job_id)]
    assert [e["type"] for e in history["events"]] == events
    assert [e["version"] for e in history["events"]] == list(range(1, len(events) + 1))
    [attempt] = history["stage_attempts"]
    assert attempt["outcome"] == "retry_scheduled" and attempt["error"] == "boom"
    assert attempt["duration_ms"] is not None
    assert get(client, "/workflow-queue/jobs/8d0e6c6c-0000-4000-8000-000000000000/history"
               ).status_code == 404


def test_cancel_needs_the_write_scope_and_a_state_that_allows_it(
    settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    job_id = jobs.enqueue("code_review", "c", trigger(1)).job_id
    path = f"/workflow-queue/jobs/{job_id}/cancel"

    assert client.simulate_post(path).status_code == 401
    assert client.simulate_post(path, headers=READ).status_code == 403
    assert jobs.get(job_id).status == "PENDING"

    done = client.simulate_post(path, headers={**WRITE, "X-Request-ID": "req-42"},
                                json={"reason": "superseded"})
    assert done.status_code == 202
    assert done.headers["X-Request-ID"] == "req-42"
    cancelled = list(jobs.repository.event_store.get(job_id))[-1]
    assert isinstance(cancelled, Job.Cancelled)
    assert cancelled.correlation_id == "req-42" and cancelled.reason == "superseded"
    assert client.simulate_post(path, headers=WRITE).status_code == 409
    unknown = "/workflow-queue/jobs/8d0e6c6c-0000-4000-8000-000000000000/cancel"
    assert client.simulate_post(unknown, headers=WRITE).status_code == 404


def test_retry_answers_409_unless_the_job_failed(
    settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    failed = jobs.enqueue("code_review", "f", trigger(1)).job_id
    fail_next(jobs, failed, retry=False)
    pending = jobs.enqueue("code_review", "p", trigger(2)).job_id

    assert client.simulate_post(f"/workflow-queue/jobs/{pending}/retry",
                                headers=WRITE).status_code == 409
    answer = client.simulate_post(f"/workflow-queue/jobs/{failed}/retry", headers=WRITE)
    assert answer.status_code == 202
    assert answer.headers["X-Request-ID"]
    assert jobs.get(failed).status == "PROCESSING"


def test_metrics_equal_a_direct_count_over_the_events(
    settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    ids = varied_history(jobs)
    project(settings)
    events = [e for job_id in ids for e in jobs.repository.event_store.get(job_id)]

    def count(kind: type[Any]) -> int:
        return sum(isinstance(e, kind) for e in events)

    metrics = get(client, "/workflow-queue/metrics").json
    totals = metrics["totals"]
    assert totals.get("completed", 0) == count(Job.Completed)
    assert totals.get("failed", 0) == count(Job.Failed)
    assert totals.get("cancelled", 0) == count(Job.Cancelled)
    assert totals.get("retries", 0) == sum(isinstance(e, Job.StageFailed) and e.retry_at is not None
                                    for e in events)
    assert totals.get("recoveries", 0) == count(Job.Recovered)
    assert totals.get("waits_timed_out", 0) == count(Job.WaitTimedOut)
    assert totals.get("manual_retries", 0) == count(Job.Retried)
    statuses: dict[str, int] = {}
    for job_id in ids:
        status = str(jobs.get(job_id).status)
        statuses[status] = statuses.get(status, 0) + 1
    assert metrics["jobs_by_status"] == statuses
    assert metrics["window"].get("completed", 0) == count(Job.Completed)
    assert metrics["durations_ms"]["queue_wait"]["count"] == sum(
        any(isinstance(e, Job.Started) for e in jobs.repository.event_store.get(i)) for i in ids)
    assert all(lag["events_behind"] == 0 for lag in metrics["projection_lag"])
    assert get(client, "/workflow-queue/metrics", hours="0").status_code == 400


def test_health_prometheus_and_openapi_are_open_and_every_route_is_documented(
    settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    project(settings)
    assert client.simulate_get("/health/live").json == {"status": "ok"}
    ready = client.simulate_get("/health/ready")
    assert ready.status_code == 200, ready.text
    get(client, "/workflow-queue/jobs")
    scrape = client.simulate_get("/metrics")
    assert scrape.status_code == 200
    assert 'conveyor_http_requests_total{app="api",method="GET",route="/workflow-queue/jobs"' \
        in scrape.text
    assert "conveyor_projection_lag_events" in scrape.text
    served = client.simulate_get("/openapi.json").json
    assert served == SPEC

    app = create_app(settings, lambda: jobs)
    routes = {(r.path, m.method.lower()) for r in falcon.inspect.inspect_routes(app)
              for m in r.methods if not m.internal}
    documented = {(path, method) for path, ops in SPEC["paths"].items() for method in ops}
    assert routes == documented


def test_readiness_names_what_is_down(settings: Settings, jobs: Jobs) -> None:
    def rabbit_down() -> None:
        raise ConnectionError("connection refused")

    client = falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=rabbit_down))
    varied_history(jobs, n=2)
    answer = client.simulate_get("/health/ready")
    assert answer.status_code == 200 or answer.status_code == 503
    strict = falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=rabbit_down,
                                                  max_lag=0))
    down = strict.simulate_get("/health/ready")
    assert down.status_code == 503
    assert set(down.json["down"]) == {"rabbitmq", "projections"}
