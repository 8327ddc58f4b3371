"""End to end: tokens made with `conveyor tokens create --organization`, against the real
processes, see, command and resume only their organisation's jobs."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import orjson

from conveyor.settings import Settings
from tests.deliveries import github_pull_request
from tests.e2e.stack import Stack, conveyor, request, running, send

ORGS = ("acme", "globex")


def call(stack: Stack, token: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return request(f"{stack.api}{path}", None if body is None else orjson.dumps(body), headers)


def test_each_organisations_token_reads_commands_and_resumes_only_its_own_jobs(
    settings: Settings, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(settings, events_exchange=f"test.events.{suffix}")
    assert settings.database_url
    # Given a token of each organisation, made with the CLI
    tokens = {}
    for org in ORGS:
        made = conveyor(settings.database_url, "tokens", "create", "--name", f"{org}-bot",
                        "--scope", "write", "--organization", org)
        assert made.returncode == 0, made.stderr
        tokens[org] = made.stdout.strip()
    processes = ("webhooks", "api", "worker", "relay", "projector")
    with running(settings, tmp_path, processes, CONVEYOR_AST_ANALYSIS="on",
                 CONVEYOR_EVENTS_EXCHANGE=settings.events_exchange) as stack:
        # And a review of each organisation's pull request, waiting for its AST analysis
        jobs = {}
        for org in ORGS:
            status, answer = send(stack, github_pull_request(repository=f"{org}/api"))
            assert status == 202, answer
            jobs[org] = answer["job_id"]
        for org in ORGS:
            assert stack.job_when(jobs[org], "WAITING_FOR_EVENT")["organization"] == org

        # When globex's token reads and cancels acme's job, and lists and counts
        nowhere = str(uuid.uuid4())
        for path, body in (("/workflow-queue/jobs/{}", None),
                           ("/workflow-queue/jobs/{}/cancel", {})):
            theirs = call(stack, tokens["globex"], path.format(jobs["acme"]), body)
            missing = call(stack, tokens["globex"], path.format(nowhere), body)
            # Then it is told acme's job does not exist, exactly as for one that does not
            assert theirs[0] == missing[0] == 404
            assert theirs[1] == {**missing[1], "description": f"No job {jobs['acme']}."}
        status, page = call(stack, tokens["globex"], "/workflow-queue/jobs")
        assert (status, [j["job_id"] for j in page["jobs"]]) == (200, [jobs["globex"]])
        status, metrics = call(stack, tokens["globex"], "/workflow-queue/metrics")
        assert (status, metrics["jobs_by_status"]) == (200, {"WAITING_FOR_EVENT": 1})

        # When acme's token sends the event globex's job waits for, then its own job's
        for org in ("globex", "acme"):
            status, _ = call(stack, tokens["acme"], "/workflow-queue/events", {
                "id": f"done-{org}", "type": "ast.task.completed", "key": f"ast-{jobs[org]}"})
            assert status == 202

        # Then acme's job resumes and completes (so the relay has matched both events),
        # and globex's job still waits, as it was
        stack.job_when(jobs["acme"], "COMPLETED")
        status, globex = stack.job(jobs["globex"])
        assert (status, globex["status"], globex["waiting_for"][0]["key"]) == (
            200, "WAITING_FOR_EVENT", f"ast-{jobs['globex']}")
        _, events = request(f"{stack.api}/workflow-queue/jobs/{jobs['globex']}/history",
                            headers={"Authorization": "Bearer read-token"})
        assert "Resumed" not in [e["type"] for e in events["events"]]
