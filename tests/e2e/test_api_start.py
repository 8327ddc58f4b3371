"""`POST /workflow-queue/jobs` and `GET /workflow-queue/jobs/{id}?wait=` on the real processes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg

from conveyor.settings import Settings
from tests.conftest import ROOT
from tests.e2e.stack import Stack, request, running

WRITE = {"Authorization": "Bearer write-token", "Content-Type": "application/json"}
REVIEW = {"platform": "github", "repository": "acme/api", "pull_request": "7",
          "head_commit": "abc123", "base_branch": "main"}


@contextmanager
def started_stack(settings: Settings, logs: Path, **extra: str) -> Iterator[Stack]:
    """Every process, knowing the tests' `greet` workflow beside code_review."""
    with running(settings, logs, ("api", "worker", "relay", "projector"), **extra,
                 PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                            if p),
                 CONVEYOR_WORKFLOW_MODULES="tests.e2e.start_workflow") as stack:
        yield stack


def start(stack: Stack, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
    return request(f"{stack.api}/workflow-queue/jobs",
                   raw if raw is not None else orjson.dumps(body), WRITE)


def stored_jobs(settings: Settings) -> int:
    with psycopg.connect(settings.require_database_url()) as conn:
        row = conn.execute("SELECT count(*) FROM jobs_events"
                           " WHERE topic LIKE '%:Job.Enqueued'").fetchone()
    return int(row[0]) if row else 0


def test_a_start_answers_202_then_200_for_its_key_and_refuses_what_it_cannot_start(
    settings: Settings, tmp_path: Path,
) -> None:
    with started_stack(settings, tmp_path) as stack:
        # When a greet job is started
        code, first = start(stack, {"workflow": "greet", "key": "k1",
                                    "input": {"name": "ada", "times": 2}})
        # Then it is accepted with the job's location, and runs to its result
        assert code == 202, first
        assert first["created"] is True
        assert first["location"] == f"/workflow-queue/jobs/{first['job_id']}"
        done = stack.job_when(first["job_id"], "COMPLETED")
        assert done["outputs"]["compose"] == {"text": "hello ada hello ada"}
        assert done["result"] == {"text": "HELLO ADA HELLO ADA"}
        # And the same key with the same input is the same job, answered 200
        code, again = start(stack, {"workflow": "greet", "key": "k1",
                                    "input": {"name": "ada", "times": 2}})
        assert (code, again["job_id"], again["created"]) == (200, first["job_id"], False)
        # And the same key with another input is refused
        code, conflict = start(stack, {"workflow": "greet", "key": "k1",
                                       "input": {"name": "bob"}})
        assert code == 409, conflict
        assert first["job_id"] in conflict["description"]
        # And an input that does not match answers 400 naming the field, storing nothing
        before = stored_jobs(settings)
        code, refused = start(stack, {"workflow": "greet", "key": "k2",
                                      "input": {"name": "ada", "times": "two"}})
        assert code == 400, refused
        assert "'input.times'" in refused["description"]
        code, refused = start(stack, {"workflow": "greet", "key": "k2", "input": {}})
        assert (code, refused["description"]) == (400, "'input.name' is required.")
        # And an unknown workflow is 404, a body over the limit 413, neither stored
        code, unknown = start(stack, {"workflow": "nope", "key": "k3", "input": {}})
        assert (code, unknown["title"]) == (404, "Workflow not found")
        code, _ = start(stack, None, raw=orjson.dumps(
            {"workflow": "greet", "key": "k4", "input": {"name": "x" * 300_000}}))
        assert code == 413
        assert stored_jobs(settings) == before == 1


def test_a_started_review_waits_supersedes_the_one_before_and_resumes_to_its_result(
    settings: Settings, tmp_path: Path,
) -> None:
    with started_stack(settings, tmp_path, CONVEYOR_AST_ANALYSIS="on") as stack:
        read = {"Authorization": "Bearer read-token"}
        # Given a review started through the API, waited for until it pauses for its AST
        code, first = start(stack, {"workflow": "code_review", "key": "r1", "input": REVIEW})
        assert code == 202, first
        code, paused = request(f"{stack.api}{first['location']}?wait=30", headers=read)
        assert (code, paused["status"]) == (200, "WAITING_FOR_EVENT"), paused
        # When another service asks for a review of a newer head of the same pull request
        code, second = start(stack, {"workflow": "code_review", "key": "r2",
                                     "input": {**REVIEW, "head_commit": "def456"}})
        # Then it supersedes the first, as a webhook's review would
        assert code == 202, second
        assert second["superseded"] == first["job_id"]
        assert stack.job_when(first["job_id"], "CANCELLED")
        # And once its AST analysis comes, it runs to its result, its input as its trigger
        code, _ = request(f"{stack.api}/workflow-queue/events", orjson.dumps(
            {"id": "ast-1", "type": "ast.task.completed", "key": f"ast-{second['job_id']}",
             "payload": {"functions": 3}}), WRITE)
        assert code == 202
        done = stack.job_when(second["job_id"], "COMPLETED")
        assert done["trigger"]["head_commit"] == "def456"
        assert done["outputs"]["ast_analysis"]["analysis"] == {"functions": 3}
        assert done["result"]["summary"].startswith("acme/api#7: ")


def test_wait_answers_when_the_job_finishes_and_at_its_deadline_when_it_does_not(
    settings: Settings, tmp_path: Path,
) -> None:
    with started_stack(settings, tmp_path) as stack:
        read = {"Authorization": "Bearer read-token"}
        # Given a job whose first stage takes 2 s
        _, slow = start(stack, {"workflow": "greet", "key": "slow",
                                "input": {"name": "ada", "seconds": 2}})
        url = f"{stack.api}/workflow-queue/jobs/{slow['job_id']}"
        # When a request waits for it up to 30 s
        began = time.monotonic()
        code, job = request(f"{url}?wait=30", headers=read)
        took = time.monotonic() - began
        # Then it is answered once the job is done, with its result, well before 30 s
        assert code == 200, job
        assert job["status"] == "COMPLETED"
        assert job["result"] == {"text": "HELLO ADA"}
        assert 1.0 < took < 10, took
        # Given a job that takes 6 s, when a request waits for it up to 1 s
        _, slower = start(stack, {"workflow": "greet", "key": "slower",
                                  "input": {"name": "ada", "seconds": 6}})
        began = time.monotonic()
        code, job = request(f"{stack.api}/workflow-queue/jobs/{slower['job_id']}?wait=1",
                            headers=read)
        took = time.monotonic() - began
        # Then it is answered after that second, with the job as it is
        assert code == 200, job
        assert job["status"] in ("PENDING", "PROCESSING")
        assert 0.9 < took < 3, took
        # And a failed job is answered as soon as it fails, with its error
        _, failing = start(stack, {"workflow": "greet", "key": "fail",
                                   "input": {"name": "ada", "fail": True}})
        code, job = request(f"{stack.api}/workflow-queue/jobs/{failing['job_id']}?wait=30",
                            headers=read)
        assert (code, job["status"]) == (200, "FAILED")
        assert "asked to fail" in orjson.dumps(job["error"]).decode()
        # And a wait longer than the API's bound is refused, not shortened
        code, refused = request(f"{url}?wait=31", headers=read)
        assert code == 400, refused
