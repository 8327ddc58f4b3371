"""The workflow-queue API through Falcon's test client, on the real database."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import falcon
import falcon.inspect
import falcon.testing
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.http.api import create_app
from conveyor.http.openapi import SPEC
from conveyor.projections.runner import PROJECTIONS
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
    assert shown.json["view"] == "projection"
    assert get(client, "/workflow-queue/jobs/8d0e6c6c-0000-4000-8000-000000000000"
               ).status_code == 404
    for path in ("not-a-uuid", "not-a-uuid/history"):
        malformed = get(client, f"/workflow-queue/jobs/{path}")
        assert (malformed.status_code, malformed.json["title"]) == (400, "Malformed job id")
    for command in ("cancel", "retry"):
        malformed = client.simulate_post(f"/workflow-queue/jobs/1234/{command}", headers=WRITE)
        assert (malformed.status_code, malformed.json["title"]) == (400, "Malformed job id")
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


@pytest.mark.parametrize("body", [{"json": {}}, {}], ids=["empty JSON object", "no body"])
def test_cancel_without_a_reason_is_accepted_and_names_the_callers_token(
    jobs: Jobs, client: falcon.testing.TestClient, body: dict[str, Any]
) -> None:
    job_id = jobs.enqueue("code_review", "c", trigger(1)).job_id
    caller = client.simulate_get("/workflow-queue/whoami", headers=WRITE)
    assert caller.status_code == 200

    answer = client.simulate_post(f"/workflow-queue/jobs/{job_id}/cancel", headers=WRITE, **body)

    assert answer.status_code == 202, answer.text
    cancelled = list(jobs.repository.event_store.get(job_id))[-1]
    assert isinstance(cancelled, Job.Cancelled)
    principal = "token:" + hashlib.sha256(b"write-token").hexdigest()[:12]
    assert cancelled.by == principal
    assert cancelled.reason == f"cancelled through the API by {principal}"


@pytest.mark.parametrize("body", [{"reason": ""}, {"reason": 7}, ["superseded"], "x"])
def test_cancel_refuses_a_reason_that_is_not_text(
    jobs: Jobs, client: falcon.testing.TestClient, body: Any
) -> None:
    job_id = jobs.enqueue("code_review", "c", trigger(1)).job_id

    answer = client.simulate_post(f"/workflow-queue/jobs/{job_id}/cancel", headers=WRITE,
                                  json=body)

    assert (answer.status_code, answer.json["title"]) == (400, "Malformed body")
    assert jobs.get(job_id).status == "PENDING"


def test_retry_needs_a_write_token(jobs: Jobs, client: falcon.testing.TestClient) -> None:
    failed = jobs.enqueue("code_review", "f", trigger(1)).job_id
    fail_next(jobs, failed, retry=False)
    path = f"/workflow-queue/jobs/{failed}/retry"

    anonymous = client.simulate_post(path)
    reader = client.simulate_post(path, headers=READ)

    assert (anonymous.status_code, anonymous.json["title"]) == (401, "Authentication required")
    assert (reader.status_code, reader.json["title"]) == (403, "Write scope required")
    assert jobs.get(failed).status == "FAILED"


def test_a_write_token_may_read_though_the_read_tokens_do_not_list_it(
    settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    assert "write-token" not in settings.api_read_tokens
    job_id = jobs.enqueue("code_review", "w", trigger(1)).job_id
    project(settings)

    listed = client.simulate_get("/workflow-queue/jobs", headers=WRITE)
    scopes = client.simulate_get("/workflow-queue/whoami", headers=WRITE)

    assert listed.status_code == 200, listed.text
    assert [j["job_id"] for j in listed.json["jobs"]] == [str(job_id)]
    assert (scopes.json["scope"], scopes.json["scopes"]) == ("write", ["read", "write"])


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
    projected = project(settings)
    assert client.simulate_get("/health/live").json == {"status": "ok"}
    get(client, "/workflow-queue/jobs")
    jobs.enqueue("code_review", "not projected yet", trigger(1))
    head = jobs.recorder.max_notification_id()
    scrape = client.simulate_get("/metrics")
    assert scrape.status_code == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(scrape.text)
               for s in family.samples}
    assert samples[("conveyor_http_requests_total", (
        ("app", "api"), ("method", "GET"), ("route", "/workflow-queue/jobs"),
        ("status", "200")))] >= 1
    lags = {labels[0][1]: value for (name, labels), value in samples.items()
            if name == "conveyor_projection_lag_events"}
    assert lags == {name: head - projected for name in PROJECTIONS}
    assert head - projected > 0
    served = client.simulate_get("/openapi.json").json
    assert served == SPEC

    app = create_app(settings, lambda: jobs)
    # OpenAPI writes `{job_id}` where Falcon's template names its converter, `{job_id:uuid}`.
    routes = {(re.sub(r"\{(\w+):\w+\}", r"{\1}", r.path), m.method.lower())
              for r in falcon.inspect.inspect_routes(app) for m in r.methods if not m.internal}
    documented = {(path, method) for path, ops in SPEC["paths"].items() for method in ops}
    assert routes == documented


def rabbit_down() -> None:
    raise ConnectionError("connection refused")


def test_readiness_is_ok_when_both_services_answer_and_projections_are_current(
    settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    varied_history(jobs, n=2)
    project(settings)

    ready = client.simulate_get("/health/ready")

    assert ready.status_code == 200, ready.text
    assert ready.json == {"status": "ok", "down": [], "postgresql": "ok", "rabbitmq": "ok",
                          "projections": "ok"}


def test_readiness_names_rabbitmq_when_it_does_not_answer(settings: Settings, jobs: Jobs) -> None:
    varied_history(jobs, n=2)
    project(settings)
    client = falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=rabbit_down))

    ready = client.simulate_get("/health/ready")

    assert ready.status_code == 503
    assert ready.json == {"status": "unavailable", "down": ["rabbitmq"], "postgresql": "ok",
                          "rabbitmq": "connection refused", "projections": "ok"}


def test_readiness_names_projections_further_behind_than_the_bound(
    settings: Settings, jobs: Jobs
) -> None:
    varied_history(jobs, n=2)
    head = jobs.recorder.max_notification_id()

    def ready(max_lag: int) -> falcon.testing.Result:
        app = create_app(settings, lambda: jobs, amqp_check=lambda: None, max_lag=max_lag)
        return falcon.testing.TestClient(app).simulate_get("/health/ready")

    behind, within = ready(max_lag=0), ready(max_lag=head)

    assert behind.status_code == 503
    assert behind.json["down"] == ["projections"]
    assert {lag["projection"]: lag["events_behind"] for lag in behind.json["projections"]} == {
        name: head for name in PROJECTIONS}
    assert within.status_code == 200, within.text


def test_readiness_names_postgresql_when_it_cannot_be_reached(
    settings: Settings, jobs: Jobs
) -> None:
    nowhere = dataclasses.replace(settings, database_url="postgresql://postgres@127.0.0.1:1/x")
    client = falcon.testing.TestClient(create_app(nowhere, lambda: jobs, amqp_check=lambda: None))

    ready = client.simulate_get("/health/ready")

    assert ready.status_code == 503
    assert ready.json["down"] == ["postgresql"]
    assert ready.json["postgresql"].startswith("OperationalError")
    assert "projections" not in ready.json
