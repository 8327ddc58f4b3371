"""Webhook ingest on the real event store: deliveries in, one job each or nothing."""

from __future__ import annotations

import base64
import dataclasses
import json
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from threading import Barrier
from typing import Any
from uuid import UUID

import psycopg
import pytest
from falcon import testing

from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.http.webhooks.app import PLATFORMS, create_app
from conveyor.http.webhooks.platform import lower_headers
from conveyor.http.webhooks.trigger import Closing, Ignored, Pong, Trigger
from conveyor.settings import Settings
from conveyor.workflows import Workflow
from tests.deliveries import BUILDERS, SAMPLES, SECRETS, Delivery, build, credentials, sample

WRONG = {
    "github": {"github_secret": "not-it"},
    "gitlab": {"gitlab_token": "not-it"},
    "bitbucket": {"bitbucket_secret": "not-it"},
    "azure-repos": {"azure_password": "not-it"},
}


def unpacked(delivery: Delivery) -> tuple[dict[str, str], bytes]:
    return delivery.headers, delivery.body


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != name.lower()}


def all_platforms(settings: Settings) -> Settings:
    """The test's database settings with the test secrets of every platform."""
    return dataclasses.replace(
        settings,
        github_secret=SECRETS.github_secret,
        gitlab_token=SECRETS.gitlab_token,
        bitbucket_secret=SECRETS.bitbucket_secret,
        azure_username=SECRETS.azure_username,
        azure_password=SECRETS.azure_password,
    )


@pytest.fixture
def client(settings: Settings, jobs: Jobs) -> testing.TestClient:
    return testing.TestClient(create_app(all_platforms(settings), lambda: jobs))


def post(client: testing.TestClient, platform: str, headers: dict[str, str], body: bytes
         ) -> testing.Result:
    return client.simulate_post(f"/webhooks/{platform}", headers=headers, body=body)


def stored_events(database: str) -> int:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT count(*) FROM jobs_events").fetchone()
    assert row is not None
    return int(row[0])


def enqueued(jobs: Jobs, job_id: str) -> Job.Enqueued:
    first = next(iter(jobs.repository.event_store.get(UUID(job_id))))
    assert isinstance(first, Job.Enqueued)
    return first


# What each kind of outcome answers when no review of its pull request is running yet.
ANSWERS = {Trigger: (202, "accepted"), Pong: (200, "pong"), Ignored: (200, "ignored"),
           Closing: (200, "ignored")}


@pytest.mark.parametrize(("platform", "name"), list(BUILDERS))
def test_every_kind_of_delivery_gets_its_answer_and_at_most_its_job_on_the_real_store(
    client: testing.TestClient, jobs: Jobs, database: str, platform: str, name: str
) -> None:
    sent = build(platform, name)
    outcome = PLATFORMS[platform].parse(lower_headers(sent.headers), sent.body, SECRETS)

    result = post(client, platform, sent.headers, sent.body)

    assert (result.status_code, result.json["status"]) == ANSWERS[type(outcome)]
    if not isinstance(outcome, Trigger):
        assert stored_events(database) == 0
        return
    job = jobs.get(UUID(result.json["job_id"]))
    stored = dict(job.trigger)
    assert stored.pop("received_at")
    expected = outcome.as_dict(datetime.now(UTC))
    del expected["received_at"]
    assert stored == expected
    assert result.headers["location"] == f"/workflow-queue/jobs/{job.id}"


@pytest.mark.parametrize("platform", list(SAMPLES))
def test_a_new_job_keeps_the_raw_delivery_compressed_without_credentials(
    client: testing.TestClient, jobs: Jobs, platform: str
) -> None:
    _, credential, _ = SAMPLES[platform]
    headers, body = unpacked(sample(platform))

    result = post(client, platform, headers, body)

    delivery: dict[str, Any] | None = enqueued(jobs, result.json["job_id"]).delivery
    assert delivery is not None
    assert delivery["encoding"] == "zlib+base64"
    assert zlib.decompress(base64.b64decode(delivery["body"])) == body
    assert delivery["content_type"] == headers["Content-Type"]
    if platform in ("gitlab", "azure-repos"):
        assert credential.lower() not in delivery["headers"]
    else:
        assert delivery["headers"][credential.lower()] == headers[credential]


def refusals(platform: str) -> list[tuple[str, int]]:
    """Each way a delivery of `platform` can be refused, and the status it earns."""
    cases = [("wrong secret", 401), ("missing credential", 401), ("oversized body", 413),
             ("empty body", 400), ("truncated JSON", 400), ("wrong content type", 415)]
    if SAMPLES[platform][2] is not None:
        cases.append(("missing event header", 400))
    if platform in ("github", "bitbucket"):
        # The signature covers the body: any change to it is a forgery.
        cases += [("body altered by one byte", 401), ("re-serialised JSON", 401)]
    else:
        # A token or password does not cover the body; the altered byte breaks the JSON.
        cases.append(("body altered by one byte", 400))
    return cases


@pytest.mark.parametrize(
    ("platform", "case", "status"),
    [(platform, case, status) for platform in SAMPLES for case, status in refusals(platform)],
)
def test_a_refused_delivery_answers_its_error_and_stores_nothing(
    settings: Settings, jobs: Jobs, database: str, platform: str, case: str, status: int
) -> None:
    _, credential, event_header = SAMPLES[platform]
    headers, body = unpacked(sample(platform))
    config = all_platforms(settings)
    if case == "wrong secret":
        config = dataclasses.replace(config, **WRONG[platform])
    elif case == "missing credential":
        headers = without(headers, credential)
    elif case == "oversized body":
        config = dataclasses.replace(config, max_body_bytes=len(body) - 1)
    elif case == "empty body":
        body = b""
        headers = credentials(platform, headers, body)
    elif case == "truncated JSON":
        body = body[: len(body) // 2]
        headers = credentials(platform, headers, body)
    elif case == "wrong content type":
        headers = {**without(headers, "Content-Type"), "Content-Type": "text/plain"}
    elif case == "missing event header":
        assert event_header is not None
        headers = without(headers, event_header)
    elif case == "body altered by one byte":
        body = body.replace(b'"', b"'", 1)
    elif case == "re-serialised JSON":
        body = json.dumps(json.loads(body)).encode()
    client = testing.TestClient(create_app(config, lambda: jobs))

    result = post(client, platform, headers, body)

    assert result.status_code == status, result.json
    assert set(result.json) == {"title", "description"}
    assert stored_events(database) == 0


@pytest.mark.parametrize("platform", list(SAMPLES))
def test_one_delivery_sent_ten_times_at_once_makes_one_job_and_ten_answers(
    client: testing.TestClient, jobs: Jobs, database: str, platform: str
) -> None:
    headers, body = unpacked(sample(platform))
    barrier = Barrier(10)

    def send(_: int) -> tuple[int, str]:
        barrier.wait()
        result = post(client, platform, headers, body)
        return result.status_code, result.json["job_id"]

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, range(10)))

    assert sorted(status for status, _ in answers) == [200] * 9 + [202]
    assert len({job_id for _, job_id in answers}) == 1
    # One Job.Enqueued, and the pull request's Tracked and ReviewRequested.
    assert stored_events(database) == 3


def test_a_review_delivery_enqueues_the_workflow_the_settings_name(
    settings: Settings, jobs: Jobs
) -> None:
    # Given a second workflow registered, and the webhook app told to start it for reviews
    lint = Workflow("lint")
    lint.stage("check")(lambda ctx: None)
    jobs.workflows = {**jobs.workflows, "lint": lint}
    app = create_app(dataclasses.replace(all_platforms(settings), review_workflow="lint"),
                     lambda: jobs)

    # When a pull request is opened
    result = post(testing.TestClient(app), "github", *unpacked(sample("github")))

    # Then its job runs that workflow, not code_review
    assert result.status_code == 202
    job = jobs.get(UUID(result.json["job_id"]))
    assert (job.workflow, [step["stage"] for step in job.plan]) == ("lint", ["check"])
