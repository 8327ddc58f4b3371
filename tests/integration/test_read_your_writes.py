"""A job the system acknowledged is readable at once, though the `jobs` projection lags."""

from __future__ import annotations

import falcon.testing

from conveyor.application import Jobs
from conveyor.http.api import create_app as create_api
from conveyor.http.webhooks.app import create_app as create_webhooks
from conveyor.http.webhooks.github import sample_github_delivery
from conveyor.settings import Settings
from tests.integration.projections_support import complete_next, project

READ = {"Authorization": "Bearer read-token"}
DELIVERIES = 200


def test_every_202_location_answers_at_once_while_no_projector_runs(
    settings: Settings, jobs: Jobs
) -> None:
    webhooks = falcon.testing.TestClient(create_webhooks(settings, lambda: jobs))
    api = falcon.testing.TestClient(create_api(settings, lambda: jobs, amqp_check=lambda: None))

    answers = []
    for n in range(DELIVERIES):
        headers, body = sample_github_delivery(str(settings.github_secret), pull_request=n)
        accepted = webhooks.simulate_post("/webhooks/github", headers=headers, body=body)
        assert accepted.status_code == 202, accepted.text
        answers.append((accepted.json["job_id"],
                        api.simulate_get(accepted.headers["Location"], headers=READ)))

    assert [shown.status_code for _, shown in answers] == [200] * DELIVERIES
    assert all(shown.json["job_id"] == job_id and shown.json["status"] == "PENDING"
               and shown.json["view"] == "log" for job_id, shown in answers)


def test_a_job_read_from_the_log_shows_what_the_projection_shows_once_caught_up(
    settings: Settings, jobs: Jobs
) -> None:
    api = falcon.testing.TestClient(create_api(settings, lambda: jobs, amqp_check=lambda: None))
    headers, body = sample_github_delivery(str(settings.github_secret), pull_request=1)
    webhooks = falcon.testing.TestClient(create_webhooks(settings, lambda: jobs))
    location = webhooks.simulate_post("/webhooks/github", headers=headers, body=body
                                      ).headers["Location"]
    complete_next(jobs, jobs.get(location.rsplit("/", 1)[1]).id)

    fresh = api.simulate_get(location, headers=READ).json
    project(settings)
    projected = api.simulate_get(location, headers=READ).json

    assert (fresh.pop("view"), projected.pop("view")) == ("log", "projection")
    assert fresh == projected
    assert fresh["stages"][0]["status"] == "completed"


def test_an_id_in_neither_the_projection_nor_the_log_is_not_found(
    settings: Settings, jobs: Jobs
) -> None:
    api = falcon.testing.TestClient(create_api(settings, lambda: jobs, amqp_check=lambda: None))

    missing = api.simulate_get("/workflow-queue/jobs/8d0e6c6c-0000-4000-8000-000000000000",
                               headers=READ)

    assert (missing.status_code, missing.json["title"]) == (404, "Job not found")
