"""End to end: Conveyor's real processes, signed deliveries, completed jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.settings import Settings
from tests.deliveries import PLATFORMS, SAMPLES, SECRETS_ENV, github_pull_request, real_or_built
from tests.e2e.stack import Stack, request, running, send
from tests.waiting import in_plan_order

STEPS = [["validate"], ["fetch_changes"], ["review_pull_request", "review_files"], ["publish"]]


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    with running(settings, tmp_path) as stack:
        yield stack


def test_a_signed_pull_request_delivery_becomes_a_completed_job_with_every_stage_in_order(
    stack: Stack,
) -> None:
    status, answer = send(stack, github_pull_request("opened"))
    assert status == 202, answer

    job = stack.job_when(answer["job_id"], "COMPLETED")
    assert in_plan_order([s["stage"] for s in job["stages"]], STEPS)
    assert all(s["status"] == "completed" for s in job["stages"])
    assert job["repository"] and job["pull_request"] and job["head_commit"]


def test_a_forged_delivery_is_refused_and_a_repeated_one_makes_one_job(stack: Stack) -> None:
    sent = github_pull_request("opened")
    body, headers = sent.body, sent.headers
    forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}

    assert request(f"{stack.webhooks}/webhooks/github", body, forged)[0] == 401
    assert stack.count_jobs() == 0

    first = request(f"{stack.webhooks}/webhooks/github", body, headers)
    second = request(f"{stack.webhooks}/webhooks/github", body, headers)
    assert (first[0], second[0]) == (202, 200)
    assert first[1]["job_id"] == second[1]["job_id"]
    assert stack.count_jobs() == 1


@pytest.fixture
def every_platform(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """The stack with all four platforms' webhook endpoints enabled."""
    with running(settings, tmp_path, **SECRETS_ENV) as stack:
        yield stack


def test_a_delivery_of_each_platform_through_the_webhook_server_becomes_a_completed_job(
    every_platform: Stack,
) -> None:
    # Given one review-starting delivery of each platform: the recorded real one when the
    # shared fixtures are beside the checkout, else one built to the platform's shape
    sent = {platform: real_or_built(platform, SAMPLES[platform][0]) for platform in PLATFORMS}

    # When each goes through `conveyor webhooks` under gunicorn
    answers = {platform: send(every_platform, delivery) for platform, delivery in sent.items()}

    # Then each is accepted as a job of its own, which runs to completion
    assert {p: status for p, (status, _) in answers.items()} == dict.fromkeys(PLATFORMS, 202)
    job_ids = {platform: answer["job_id"] for platform, (_, answer) in answers.items()}
    assert len(set(job_ids.values())) == len(PLATFORMS)
    for platform, job_id in job_ids.items():
        job = every_platform.job_when(job_id, "COMPLETED")
        assert (job["platform"], job["job_id"]) == (platform, job_id)
        assert job["repository"] and job["pull_request"] and job["head_commit"]
    assert every_platform.count_jobs() == len(PLATFORMS)
