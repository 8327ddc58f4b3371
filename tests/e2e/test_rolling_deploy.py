"""End to end: a rolling deploy that changes a workflow's graph strands no job
(docs/architecture.md §3.8). Issue 14's test, scaled down to 20 jobs before the deploy."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from conveyor.settings import Settings
from tests.conftest import ROOT
from tests.e2e import deploy_v1, deploy_v2
from tests.e2e.stack import CONVEYOR, free_port, process_env, request
from tests.waiting import wait_until

WRITE = {"Authorization": "Bearer write-token", "Content-Type": "application/json"}
V1, V2 = deploy_v1.deploy_review, deploy_v2.deploy_review
PAUSED, RUNNING_THROUGH, AFTER = 10, 10, 10


class Fleet:
    """Conveyor processes started one by one, each on its own code (`deploy_v1` or `_v2`)."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, code: str, api_port: int = 0) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        return process_env(self.settings, 0, api_port or free_port(), PYTHONPATH=path,
                           CONVEYOR_WORKFLOW_MODULES=f"tests.e2e.deploy_{code}",
                           CONVEYOR_WORKER_THREADS="2")

    def start(self, label: str, command: str, code: str) -> str:
        """Start `conveyor <command>` on `code`; for the API, answer its base URL once live."""
        port = free_port()
        with (self.logs / f"{label}.log").open("wb") as log:
            self.started[label] = subprocess.Popen([CONVEYOR, command], env=self.env(code, port),
                                                   stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{port}"
        if command == "api":
            wait_until(lambda: live(base), timeout=30)
        return base

    def stop(self, label: str) -> None:
        process = self.started.pop(label)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"{label} ignored SIGTERM:\n{(self.logs / f'{label}.log').read_text()}")

    def stop_all(self) -> None:
        for label in list(self.started):
            self.stop(label)


@contextmanager
def fleet(settings: Settings, logs: Path) -> Iterator[Fleet]:
    processes = Fleet(settings, logs)
    try:
        yield processes
    finally:
        processes.stop_all()


def live(base: str) -> bool:
    try:
        return request(f"{base}/health/live")[0] == 200
    except OSError:
        return False


def start_job(api: str, key: str, pause: bool) -> str:
    code, answer = request(f"{api}/workflow-queue/jobs", orjson.dumps(
        {"workflow": "deploy_review", "key": key, "input": {"pause": pause}}), WRITE)
    assert code == 202, answer
    return str(answer["job_id"])


def jobs_read(settings: Settings) -> dict[str, dict[str, Any]]:
    with psycopg.connect(settings.require_database_url()) as conn:
        rows = conn.execute("SELECT job_id::text, status, workflow_version, outputs FROM jobs"
                            " WHERE workflow = 'deploy_review'").fetchall()
    return {job_id: {"status": status, "version": version, "outputs": outputs}
            for job_id, status, version, outputs in rows}


def workflows_listing(fleet: Fleet, code: str) -> str:
    listed = subprocess.run([CONVEYOR, "workflows"], env=fleet.env(code), capture_output=True,
                            text=True, timeout=60, check=True)
    return listed.stdout


def line_of(listing: str, version: str) -> str:
    (line,) = [line for line in listing.splitlines()
               if line.split()[:2] == ["deploy_review", f"v{version}"]]
    return line


def test_a_rolling_deploy_finishes_old_jobs_on_the_old_graph_and_new_ones_on_the_new(
    settings: Settings, tmp_path: Path
) -> None:
    assert V1.version != V2.version
    run = uuid.uuid4().hex[:6]
    with fleet(settings, tmp_path) as processes:
        # Given two workers on version 1, and 20 jobs: half paused for an outside event
        processes.start("relay", "relay", "v1")
        processes.start("projector", "projector", "v1")
        processes.start("worker-v1-a", "worker", "v1")
        processes.start("worker-v1-b", "worker", "v1")
        api = processes.start("api-v1", "api", "v1")
        paused = [start_job(api, f"{run}-paused-{n}", True) for n in range(PAUSED)]
        through = [start_job(api, f"{run}-through-{n}", False) for n in range(RUNNING_THROUGH)]
        wait_until(lambda: all(jobs_read(settings).get(job_id, {}).get("status")
                               == "WAITING_FOR_EVENT" for job_id in paused), timeout=60)

        # When the deploy replaces the API and a worker with version 2, keeping one v1 worker
        processes.stop("worker-v1-a")
        processes.start("worker-v2-a", "worker", "v2")
        processes.stop("api-v1")
        api = processes.start("api-v2", "api", "v2")
        processes.start("worker-v2-b", "worker", "v2")
        after = [start_job(api, f"{run}-after-{n}", False) for n in range(AFTER)]
        # and the paused jobs' events arrive
        for job_id in paused:
            code, answer = request(f"{api}/workflow-queue/events", orjson.dumps(
                {"id": f"analysed-{job_id}", "type": "deploy.analysed", "key": job_id,
                 "payload": {}}), WRITE)
            assert code == 202, answer

        # Then every job completes, none fails
        wait_until(lambda: sorted({job["status"] for job in jobs_read(settings).values()})
                   == ["COMPLETED"] and len(jobs_read(settings)) == 30, timeout=120)
        jobs = jobs_read(settings)
        # each version-1 job on version 1's graph and code, each new one on version 2's
        v1_outputs = {stage["stage"]: {"code": "v1"} for stage in V1.plan()}
        v2_outputs = {stage["stage"]: {"code": "v2"} for stage in V2.plan()}
        assert {job_id: (jobs[job_id]["version"], jobs[job_id]["outputs"])
                for job_id in paused + through} == {
            job_id: (V1.version, v1_outputs) for job_id in paused + through}
        assert {job_id: (jobs[job_id]["version"], jobs[job_id]["outputs"])
                for job_id in after} == {job_id: (V2.version, v2_outputs) for job_id in after}

        # And `conveyor workflows` says version 1 drained while its last worker runs
        listing = workflows_listing(processes, "v2")
        assert line_of(listing, V1.version).split()[2:] == [
            "0", "1", "drained:", "its", "workers", "may", "stop"], listing
        assert line_of(listing, V2.version).split()[2:] == ["0", "2", "current"], listing

        # And when the last version-1 worker stops, version 1 is no longer listed
        processes.stop("worker-v1-b")
        listing = workflows_listing(processes, "v2")
        assert f"v{V1.version}" not in listing, listing
