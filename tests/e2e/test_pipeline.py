"""End to end: Conveyor's real processes, a real signed delivery, a completed job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.settings import Settings
from tests.e2e.stack import Stack, github_fixture, request, running
from tests.waiting import in_plan_order

STEPS = [["validate"], ["fetch_changes"], ["review_pull_request", "review_files"], ["publish"]]


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    with running(settings, tmp_path) as stack:
        yield stack


def test_a_real_pull_request_delivery_becomes_a_completed_job_with_every_stage_in_order(
    stack: Stack,
) -> None:
    body, headers = github_fixture("pull_request.opened")

    status, answer = request(f"{stack.webhooks}/webhooks/github", body, headers)
    assert status == 202, answer

    job = stack.job_when(answer["job_id"], "COMPLETED")
    assert in_plan_order([s["stage"] for s in job["stages"]], STEPS)
    assert all(s["status"] == "completed" for s in job["stages"])
    assert job["repository"] and job["pull_request"] and job["head_commit"]


def test_a_forged_delivery_is_refused_and_a_repeated_one_makes_one_job(stack: Stack) -> None:
    body, headers = github_fixture("pull_request.opened")
    forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}

    assert request(f"{stack.webhooks}/webhooks/github", body, forged)[0] == 401
    assert stack.count_jobs() == 0

    first = request(f"{stack.webhooks}/webhooks/github", body, headers)
    second = request(f"{stack.webhooks}/webhooks/github", body, headers)
    assert (first[0], second[0]) == (202, 200)
    assert first[1]["job_id"] == second[1]["job_id"]
    assert stack.count_jobs() == 1
