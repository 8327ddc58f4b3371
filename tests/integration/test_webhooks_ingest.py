"""Webhook ingest on the real event store: recorded deliveries in, one job each or nothing."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import zlib
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any
from uuid import UUID

import psycopg
import pytest
from falcon import testing

from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.http.webhooks.app import create_app
from conveyor.settings import Settings
from conveyor.workflows import Workflow
from tests.conftest import FIXTURES

# URL segment -> fixture folder.
FOLDERS = {"github": "github", "gitlab": "gitlab", "bitbucket": "bitbucket", "azure-repos": "azure"}
GITHUB_SECRET = "It's a Secret to Everybody"
BITBUCKET_SECRET = "bitbucket-webhook-test-secret"

# Every recorded delivery -> (status, answer) and, for a new job, its trigger's fields
# (repository, pull_request, head_commit, action).
ACCEPTED = 202
OUTCOMES: dict[tuple[str, str], tuple[int, str, tuple[str, str, str | None, str] | None]] = {
    ("github", "ping"): (200, "pong", None),
    ("github", "pull_request.opened"): (ACCEPTED, "accepted", (
        "Codertocat/Hello-World", "2", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "opened")),
    ("github", "pull_request.synchronize"): (ACCEPTED, "accepted", (
        "Codertocat/Hello-World", "2", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "updated")),
    ("github", "pull_request.reopened"): (ACCEPTED, "accepted", (
        "Codertocat/Hello-World", "2", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "reopened")),
    ("github", "pull_request.ready_for_review"): (ACCEPTED, "accepted", (
        "Codertocat/Hello-World", "2", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "ready")),
    # No review was ever requested for it here, so closing it has nothing to cancel.
    ("github", "pull_request.closed"): (200, "ignored", None),
    ("github", "pull_request.edited"): (200, "ignored", None),
    ("github", "issue_comment.created"): (200, "ignored", None),
    ("gitlab", "merge_request.open"): (ACCEPTED, "accepted", (
        "gitlabhq/gitlab-test", "1", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "opened")),
    ("gitlab", "merge_request.reopen"): (ACCEPTED, "accepted", (
        "gitlab-org/hello-world", "1", "c4c79227ed610f1151f05bbc5be33b4f340d39c8", "reopened")),
    ("gitlab", "merge_request.update"): (ACCEPTED, "accepted", (
        "test/woodpecker", "2", "0ab96a10266b95b4b533dcfd98738015fbe70889", "updated")),
    ("gitlab", "merge_request.close"): (200, "ignored", None),
    ("gitlab", "merge_request.merge"): (200, "ignored", None),
    ("gitlab", "note.merge_request"): (200, "ignored", None),
    ("bitbucket", "pullrequest.created"): (ACCEPTED, "accepted", (
        "brydzewski/foo", "1", "507a576e59b3", "opened")),
    ("bitbucket", "pullrequest.updated"): (ACCEPTED, "accepted", (
        "brydzewski/foo", "1", "0704fc5beccc", "updated")),
    ("bitbucket", "pullrequest.fulfilled"): (200, "ignored", None),
    ("bitbucket", "pullrequest.comment_created"): (200, "ignored", None),
    ("azure-repos", "git.pullrequest.created"): (ACCEPTED, "accepted", (
        "Fabrikam/Fabrikam", "1", "4444eeee455ff5aaaaabb66ccccccccc7777cccc", "opened")),
    ("azure-repos", "git.pullrequest.updated"): (200, "ignored", None),
    ("azure-repos", "git.pullrequest.merged"): (200, "ignored", None),
    ("azure-repos", "ms.vss-code.git-pullrequest-comment-event"): (200, "ignored", None),
}
# A recorded, review-starting delivery of each platform, and the header carrying its credential.
SAMPLES = {
    "github": ("pull_request.opened", "X-Hub-Signature-256", "X-GitHub-Event"),
    "gitlab": ("merge_request.open", "X-Gitlab-Token", "X-Gitlab-Event"),
    "bitbucket": ("pullrequest.created", "X-Hub-Signature", "X-Event-Key"),
    "azure-repos": ("git.pullrequest.created", "Authorization", None),
}
WRONG = {
    "github": {"github_secret": "not-it"},
    "gitlab": {"gitlab_token": "not-it"},
    "bitbucket": {"bitbucket_secret": "not-it"},
    "azure-repos": {"azure_password": "not-it"},
}


def recorded(platform: str, name: str) -> tuple[dict[str, str], bytes]:
    """A fixture's headers and its body byte for byte, read in place."""
    folder = FIXTURES / FOLDERS[platform]
    body = (folder / f"{name}.json").read_bytes()
    headers = json.loads((folder / f"{name}.headers.json").read_text(encoding="utf-8"))
    return headers, body


def signed(platform: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
    """Headers with the platform's signature recomputed over `body`, so only the body differs."""
    digest = "sha256=" + hmac.new(
        (GITHUB_SECRET if platform == "github" else BITBUCKET_SECRET).encode(),
        body, hashlib.sha256,
    ).hexdigest()
    if platform == "github":
        return {**headers, "X-Hub-Signature-256": digest}
    if platform == "bitbucket":
        return {**headers, "X-Hub-Signature": digest}
    return headers


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != name.lower()}


def all_platforms(settings: Settings) -> Settings:
    """The test's database settings with the fixtures' published secrets for every platform."""
    return dataclasses.replace(
        settings,
        github_secret=GITHUB_SECRET,
        gitlab_token="test-webhook-token",
        bitbucket_secret=BITBUCKET_SECRET,
        azure_username="test-user",
        azure_password="test-password",
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


@pytest.mark.parametrize(("platform", "name"), list(OUTCOMES))
def test_every_recorded_delivery_gets_its_expected_outcome_on_the_real_store(
    client: testing.TestClient, jobs: Jobs, database: str, platform: str, name: str
) -> None:
    headers, body = recorded(platform, name)
    status, answer, fields = OUTCOMES[platform, name]

    result = post(client, platform, headers, body)

    assert (result.status_code, result.json["status"]) == (status, answer)
    if fields is None:
        assert stored_events(database) == 0
        return
    job = jobs.get(UUID(result.json["job_id"]))
    trigger = job.trigger
    assert (trigger["platform"], trigger["repository"], trigger["pull_request"],
            trigger["head_commit"], trigger["action"]) == (platform, *fields)
    assert trigger["delivery_id"] and trigger["received_at"]
    assert result.headers["location"] == f"/workflow-queue/jobs/{job.id}"


@pytest.mark.parametrize("platform", list(SAMPLES))
def test_a_new_job_keeps_the_raw_delivery_compressed_without_credentials(
    client: testing.TestClient, jobs: Jobs, platform: str
) -> None:
    name, credential, _ = SAMPLES[platform]
    headers, body = recorded(platform, name)

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
    name, credential, event_header = SAMPLES[platform]
    headers, body = recorded(platform, name)
    config = all_platforms(settings)
    if case == "wrong secret":
        config = dataclasses.replace(config, **WRONG[platform])
    elif case == "missing credential":
        headers = without(headers, credential)
    elif case == "oversized body":
        config = dataclasses.replace(config, max_body_bytes=len(body) - 1)
    elif case == "empty body":
        body = b""
        headers = signed(platform, headers, body)
    elif case == "truncated JSON":
        body = body[: len(body) // 2]
        headers = signed(platform, headers, body)
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
    headers, body = recorded(platform, SAMPLES[platform][0])
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
    result = post(testing.TestClient(app), "github", *recorded("github", "pull_request.opened"))

    # Then its job runs that workflow, not code_review
    assert result.status_code == ACCEPTED
    job = jobs.get(UUID(result.json["job_id"]))
    assert (job.workflow, [step["stage"] for step in job.plan]) == ("lint", ["check"])
