"""End to end: Conveyor's real processes, a real signed delivery, a completed job."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from conveyor.settings import Settings
from tests.conftest import FIXTURES
from tests.waiting import wait_until

CONVEYOR = str(Path(sys.executable).parent / "conveyor")
PROCESSES = ("webhooks", "api", "worker", "relay", "projector")
STAGES = ["validate", "fetch_changes", "review", "publish"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
            ) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data, headers=headers or {},
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, orjson.loads(body) if body else None


@dataclass
class Stack:
    webhooks: str
    api: str
    settings: Settings

    def job(self, job_id: str) -> tuple[int, Any]:
        return request(f"{self.api}/workflow-queue/jobs/{job_id}",
                       headers={"Authorization": "Bearer read-token"})

    def count_jobs(self) -> int:
        assert self.settings.database_url
        with psycopg.connect(self.settings.database_url) as conn:
            row = conn.execute("SELECT count(DISTINCT originator_id) FROM jobs_events").fetchone()
            return int(row[0]) if row else 0


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    webhooks_port, api_port = free_port(), free_port()
    assert settings.database_url and settings.github_secret
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": settings.database_url,
        "CONVEYOR_AMQP_URL": settings.amqp_url,
        "CONVEYOR_QUEUE_NAME": settings.queue_name,
        "CONVEYOR_GITHUB_SECRET": settings.github_secret,
        "CONVEYOR_API_READ_TOKENS": "read-token",
        "CONVEYOR_API_WRITE_TOKENS": "write-token",
        "CONVEYOR_WEBHOOKS_BIND": f"127.0.0.1:{webhooks_port}",
        "CONVEYOR_API_BIND": f"127.0.0.1:{api_port}",
        "CONVEYOR_RELAY_POLL_SECONDS": "0.2",
        "CONVEYOR_WEB_WORKERS": "1",
        "CONVEYOR_WORKER_PROCESSES": "1",
    }
    processes = {}
    for name in PROCESSES:
        with (tmp_path / f"{name}.log").open("wb") as log:
            processes[name] = subprocess.Popen(
                [CONVEYOR, name], env=env, stdout=subprocess.DEVNULL, stderr=log
            )
    stack = Stack(f"http://127.0.0.1:{webhooks_port}", f"http://127.0.0.1:{api_port}", settings)
    try:
        for base in (stack.webhooks, stack.api):
            wait_until(lambda base=base: _answers(f"{base}/health/live"), timeout=30)
        yield stack
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                pytest.fail(f"{name} ignored SIGTERM:\n{(tmp_path / f'{name}.log').read_text()}")


def _answers(url: str) -> bool:
    try:
        return request(url)[0] == 200
    except OSError:
        return False


def fixture(name: str) -> tuple[bytes, dict[str, str]]:
    body = (FIXTURES / "github" / f"{name}.json").read_bytes()
    headers = orjson.loads((FIXTURES / "github" / f"{name}.headers.json").read_bytes())
    return body, headers


def test_a_real_pull_request_delivery_becomes_a_completed_job_with_every_stage_in_order(
    stack: Stack,
) -> None:
    body, headers = fixture("pull_request.opened")

    status, answer = request(f"{stack.webhooks}/webhooks/github", body, headers)
    assert status == 202, answer

    job = wait_until(lambda: (lambda r: r[1] if r[0] == 200 and r[1]["status"] == "COMPLETED"
                              else None)(stack.job(answer["job_id"])))
    assert [s["stage"] for s in job["stages"]] == STAGES
    assert all(s["status"] == "completed" for s in job["stages"])
    assert job["repository"] and job["pull_request"] and job["head_commit"]


def test_a_forged_delivery_is_refused_and_a_repeated_one_makes_one_job(stack: Stack) -> None:
    body, headers = fixture("pull_request.opened")
    forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}

    assert request(f"{stack.webhooks}/webhooks/github", body, forged)[0] == 401
    assert stack.count_jobs() == 0

    first = request(f"{stack.webhooks}/webhooks/github", body, headers)
    second = request(f"{stack.webhooks}/webhooks/github", body, headers)
    assert (first[0], second[0]) == (202, 200)
    assert first[1]["job_id"] == second[1]["job_id"]
    assert stack.count_jobs() == 1
