"""Tenants on every job, on the real database: ingest, upcasting, read model, API, replay."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any
from uuid import UUID

import falcon.testing
import orjson
import psycopg
from eventsourcing.persistence import StoredEvent

from conveyor import logs
from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.http.api import create_app as create_api
from conveyor.http.webhooks.app import create_app as create_webhooks
from conveyor.replay import verify
from conveyor.settings import Settings
from tests.deliveries import SECRETS, Delivery, gitlab_merge_request
from tests.integration.projections_support import fail_next, project, trigger

READ = {"Authorization": "Bearer read-token"}


def api(settings: Settings, jobs: Jobs) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_api(settings, lambda: jobs, amqp_check=lambda: None))


class JsonLines(logging.Handler):
    """Keeps the structured log lines written while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))


def store_in_the_old_shape(jobs: Jobs, job: Job) -> None:
    """Store `job`'s `Enqueued` as version 1 wrote it: no class_version, no tenant fields
    (nor the traceparent of version 4, nor the workflow_version of version 5)."""
    (enqueued,) = job.collect_events()
    stored = jobs.mapper.to_stored_event(enqueued)
    state = orjson.loads(stored.state)
    assert state.pop("class_version") == 5
    assert {state.pop("organization"), state.pop("team"), state.pop("priority"),
            state.pop("traceparent"), state.pop("workflow_version")} == {None}
    jobs.recorder.insert_events([StoredEvent(
        originator_id=stored.originator_id, originator_version=stored.originator_version,
        topic=stored.topic, state=orjson.dumps(state))])


def test_a_job_enqueued_before_tenants_loads_projects_and_verifies_with_no_organisation(
    settings: Settings, jobs: Jobs
) -> None:
    # Given a job whose Enqueued event was stored in the old shape, in PostgreSQL
    plan = jobs.workflows["code_review"].plan()
    old = Job(key="before-tenants", workflow="code_review", plan=plan, trigger=trigger(1))
    store_in_the_old_shape(jobs, old)

    # When it is read, worked on, projected and verified
    loaded = jobs.get(old.id)
    fail_next(jobs, old.id, retry=False)
    project(settings)
    shown = api(settings, jobs).simulate_get(f"/workflow-queue/jobs/{old.id}", headers=READ)

    # Then it belongs to no organisation, everywhere, and the rebuild agrees with the live row
    assert (loaded.organization, loaded.team) == (None, None)
    assert loaded.trigger == trigger(1) and loaded.workflow == "code_review"
    assert shown.status_code == 200, shown.text
    assert (shown.json["status"], shown.json["organization"], shown.json["team"]) == (
        "FAILED", None, None)
    assert verify(settings, ["jobs"], out=lambda line: None) == []


def test_a_delivery_enqueues_a_job_of_its_organisation_and_team_shown_by_the_api(
    settings: Settings, jobs: Jobs
) -> None:
    # Given the webhook app on the real event store
    webhooks = falcon.testing.TestClient(create_webhooks(
        dataclasses.replace(settings, gitlab_token=SECRETS.gitlab_token), lambda: jobs))
    delivery: Delivery = gitlab_merge_request(repository="acme/platform/api")

    lines, logger = JsonLines(), logging.getLogger("conveyor.http.webhooks")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)

    # When a GitLab merge request of a project in a subgroup is delivered
    try:
        answer = webhooks.simulate_post(delivery.path, headers=delivery.headers,
                                        body=delivery.body)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    assert answer.status_code == 202, answer.text
    job_id = UUID(answer.json["job_id"])
    before = api(settings, jobs).simulate_get(f"/workflow-queue/jobs/{job_id}", headers=READ)
    project(settings)
    after = api(settings, jobs).simulate_get(f"/workflow-queue/jobs/{job_id}", headers=READ)

    # Then the job, its event and its row all name the top-level namespace and the subgroup
    job = jobs.get(job_id)
    assert (job.organization, job.team) == ("acme", "platform")
    (enqueued, *_) = jobs.repository.event_store.get(job_id)
    assert (enqueued.organization, enqueued.team) == ("acme", "platform")
    for shown, view in ((before, "log"), (after, "projection")):
        assert (shown.json["view"], shown.json["organization"], shown.json["team"]) == (
            view, "acme", "platform")
    with psycopg.connect(str(settings.database_url)) as conn:
        row = conn.execute("SELECT organization, team FROM jobs WHERE job_id = %s",
                           (job_id,)).fetchone()
    assert row == ("acme", "platform")
    (logged,) = [line for line in lines.lines if str(job_id) in line["message"]]
    assert logged["organization"] == "acme"


def test_the_organization_filter_combines_with_the_others_and_pages_without_gaps(
    settings: Settings, jobs: Jobs
) -> None:
    # Given 45 jobs of acme (every third failed), 30 of globex and 5 from before tenants
    plan = jobs.workflows["code_review"].plan()
    acme = [Job(key=f"acme-{i}", workflow="code_review", plan=plan, trigger=trigger(i),
                organization="acme", team="platform" if i % 2 else None) for i in range(45)]
    globex = [Job(key=f"globex-{i}", workflow="code_review", plan=plan,
                  trigger=trigger(i, "gitlab", "globex/web"), organization="globex")
              for i in range(30)]
    untenanted = [Job(key=f"none-{i}", workflow="code_review", plan=plan, trigger=trigger(i))
                  for i in range(5)]
    jobs.save(*acme, *globex, *untenanted)
    failed = {str(j.id) for j in acme[::3]}
    for job_id in failed:
        fail_next(jobs, UUID(job_id), retry=False)
    project(settings)
    client = api(settings, jobs)

    def walk(**params: Any) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = client.simulate_get("/workflow-queue/jobs", headers=READ, params={
                **params, "limit": "7", **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.text
            seen += page.json["jobs"]
            cursor = page.json["next_cursor"]
            if cursor is None:
                return seen

    # When the list is read a page at a time, in both orders, narrowed by organisation
    for order in ("desc", "asc"):
        of_acme = walk(organization="acme", order=order)
        failed_of_acme = walk(organization="acme", status="FAILED", order=order)
        of_globex_on_gitlab = walk(organization="globex", platform="gitlab", order=order)

        # Then each page holds only that organisation's jobs, every one exactly once
        ids = [j["job_id"] for j in of_acme]
        assert len(ids) == len(set(ids)) == 45
        assert set(ids) == {str(j.id) for j in acme}
        assert {j["organization"] for j in of_acme} == {"acme"}
        assert {j["team"] for j in of_acme} == {"platform", None}
        created = [j["created_at"] for j in of_acme]
        assert created == sorted(created, reverse=order == "desc")
        assert {j["job_id"] for j in failed_of_acme} == failed
        assert {j["job_id"] for j in of_globex_on_gitlab} == {str(j.id) for j in globex}
    assert walk(organization="initech") == []
    assert walk(organization="acme", platform="gitlab") == []
    assert len(walk()) == 80


def test_the_organization_filter_is_served_by_its_index(settings: Settings, jobs: Jobs) -> None:
    with psycopg.connect(str(settings.database_url)) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN SELECT job_id FROM jobs WHERE organization = 'acme'"
            " ORDER BY created_at DESC, job_id DESC LIMIT 50"))

    assert "jobs_organization_created_at_idx" in plan
    assert "Sort" not in plan
