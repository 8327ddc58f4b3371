"""End to end: a rolling deploy that changes a workflow's graph strands no job
(docs/architecture.md §3.9). Issue 14's test at its full size: 200 reviews on version 1, half
of them paused for an outside event, while the workers are replaced one by one with version 2.

The test prints the deploy's timeline (`pytest -s`) and writes it to `timeline.txt` in its log
folder, beside each process's log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psycopg
import pytest

from conveyor.settings import Settings
from conveyor.store.workers import WorkerStore
from tests.conftest import ROOT
from tests.e2e import deploy_v1, deploy_v2
from tests.e2e.stack import CONVEYOR, free_port, process_env, request
from tests.waiting import wait_until

T = TypeVar("T")
WRITE = {"Authorization": "Bearer write-token", "Content-Type": "application/json"}
V1, V2 = deploy_v1.deploy_review, deploy_v2.deploy_review
PAUSED, RUNNING_THROUGH, AFTER = 100, 100, 100
# Version-1 workers at the start; the deploy replaces all but the last with version 2.
V1_WORKERS = 3


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
                           CONVEYOR_WORKER_THREADS="4")

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


class Timeline:
    """Seconds from the test's start to each moment of the deploy, in the order they came."""

    def __init__(self) -> None:
        self.start = time.time()
        self.moments: list[tuple[float, str]] = []

    def mark(self, what: str, at: float | None = None) -> None:
        """Note `what` happened now, or at the epoch second `at` (a time read back)."""
        self.moments.append(((time.time() if at is None else at) - self.start, what))

    def __str__(self) -> str:
        return "\n".join(f"{seconds:7.1f} s  {what}" for seconds, what in sorted(self.moments))


@contextmanager
def recorded(logs: Path) -> Iterator[Timeline]:
    """A timeline, printed and written to `timeline.txt` in `logs` however the test ends."""
    timeline = Timeline()
    try:
        yield timeline
    finally:
        (logs / "timeline.txt").write_text(f"{timeline}\n")
        print(f"\nRolling deploy timeline (seconds from the test's start):\n{timeline}")


def live(base: str) -> bool:
    try:
        return request(f"{base}/health/live")[0] == 200
    except OSError:
        return False


def in_parallel(call: Callable[[str], T], items: list[str]) -> list[T]:
    """As a burst of clients would: eight requests at a time, against the API's eight threads."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(call, items))


def start_jobs(api: str, keys: list[str], pause: bool) -> list[str]:
    def start(key: str) -> str:
        code, answer = request(f"{api}/workflow-queue/jobs", orjson.dumps(
            {"workflow": "deploy_review", "key": key, "input": {"pause": pause}}), WRITE)
        assert code == 202, answer
        return str(answer["job_id"])

    return in_parallel(start, keys)


def send_events(api: str, job_ids: list[str]) -> None:
    def send(job_id: str) -> None:
        code, answer = request(f"{api}/workflow-queue/events", orjson.dumps(
            {"id": f"analysed-{job_id}", "type": "deploy.analysed", "key": job_id,
             "payload": {}}), WRITE)
        assert code == 202, answer

    in_parallel(send, job_ids)


def statuses(settings: Settings) -> dict[str, str]:
    with psycopg.connect(settings.require_database_url()) as conn:
        rows = conn.execute("SELECT job_id::text, status FROM jobs"
                            " WHERE workflow = 'deploy_review'").fetchall()
    return dict(rows)


def served(settings: Settings) -> dict[str, int]:
    """How many live workers advertise each version of `deploy_review`."""
    with psycopg.connect(settings.require_database_url()) as conn:
        return {version: count for (workflow, version), count in WorkerStore(conn).served().items()
                if workflow == "deploy_review"}


def serving(settings: Settings, counts: dict[str, int]) -> Callable[[], bool]:
    """A condition: exactly `counts` live workers on each version."""
    return lambda: served(settings) == counts


def histories(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each job's version, plan, the stages it completed in order, the code that ran them,
    its pauses, and when it finished (epoch seconds), from the read models."""
    with psycopg.connect(settings.require_database_url()) as conn:
        jobs = conn.execute("SELECT job_id::text, status, workflow_version, plan, outputs,"
                            " finished_at FROM jobs WHERE workflow = 'deploy_review'").fetchall()
        attempts = conn.execute("SELECT job_id::text, stage FROM job_stage_attempts"
                                " WHERE outcome = 'completed'"
                                " ORDER BY job_id, started_version").fetchall()
        events = conn.execute("SELECT job_id::text, type FROM job_events"
                              " WHERE type IN ('Paused', 'Resumed')").fetchall()
    ran: dict[str, list[str]] = {}
    for job_id, stage in attempts:
        ran.setdefault(job_id, []).append(stage)
    waits: dict[str, Counter[str]] = {}
    for job_id, kind in events:
        waits.setdefault(job_id, Counter())[kind] += 1
    return {job_id: {"status": status, "version": version,
                     "plan": tuple(step["stage"] for step in plan),
                     "ran": tuple(ran.get(job_id, ())),
                     "code": frozenset(output["code"] for output in outputs.values()),
                     "waits": tuple(sorted(waits.get(job_id, Counter()).items())),
                     "finished": finished.timestamp() if finished else None}
            for job_id, status, version, plan, outputs, finished in jobs}


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
    v1_workers = [f"worker-v1-{n}" for n in range(V1_WORKERS)]
    with recorded(tmp_path) as timeline, fleet(settings, tmp_path) as processes:
        # Given three worker processes on version 1
        processes.start("relay", "relay", "v1")
        processes.start("projector", "projector", "v1")
        for label in v1_workers:
            processes.start(label, "worker", "v1")
        api = processes.start("api-v1", "api", "v1")
        wait_until(serving(settings, {V1.version: V1_WORKERS}), timeout=60)
        timeline.mark(f"{V1_WORKERS} version-1 workers up")
        # and 200 reviews on it: half paused for an outside event, half still running
        paused = start_jobs(api, [f"{run}-paused-{n}" for n in range(PAUSED)], True)
        wait_until(lambda: [statuses(settings).get(job_id) for job_id in paused]
                   == ["WAITING_FOR_EVENT"] * PAUSED, timeout=120, interval=0.5)
        timeline.mark(f"{PAUSED} version-1 jobs paused, waiting for their event")
        through = start_jobs(api, [f"{run}-through-{n}" for n in range(RUNNING_THROUGH)], False)
        timeline.mark(f"all {PAUSED + RUNNING_THROUGH} version-1 jobs enqueued")

        # When a rolling deploy replaces the workers one by one with version 2, and the API
        # once the first version-2 worker runs, keeping one version-1 worker
        read = statuses(settings)
        running = sum(read.get(job_id) != "COMPLETED" for job_id in through)
        timeline.mark(f"deploy started, {running} running version-1 jobs not finished")
        after: list[str] = []
        for n, old in enumerate(v1_workers[:-1], start=1):
            processes.start(f"worker-v2-{n}", "worker", "v2")
            wait_until(serving(settings, {V1.version: V1_WORKERS - n + 1, V2.version: n}),
                       timeout=60)
            processes.stop(old)
            assert served(settings) == {V1.version: V1_WORKERS - n, V2.version: n}
            timeline.mark(f"{old} replaced by worker-v2-{n}")
            if n == 1:
                processes.stop("api-v1")
                api = processes.start("api-v2", "api", "v2")
                timeline.mark("API replaced by version 2")
                after = start_jobs(api, [f"{run}-after-{k}" for k in range(AFTER)], False)
                timeline.mark(f"{AFTER} version-2 jobs enqueued")
        # and the paused jobs' events arrive
        send_events(api, paused)
        timeline.mark(f"{PAUSED} events sent")

        # Then `conveyor workflows` reports version 1 drained while its last worker runs
        def drained() -> str | None:
            listing = workflows_listing(processes, "v2")
            return listing if "drained" in line_of(listing, V1.version) else None

        listing = wait_until(drained, timeout=180, interval=1) or ""
        timeline.mark("version 1 drained, as `conveyor workflows` first reports it")
        assert line_of(listing, V1.version).split()[2:] == [
            "0", "1", "drained:", "its", "workers", "may", "stop"], listing
        # and every job completes, none fails
        wait_until(lambda: Counter(statuses(settings).values())
                   == {"COMPLETED": PAUSED + RUNNING_THROUGH + AFTER}, timeout=120, interval=0.5)
        jobs = histories(settings)
        v1_jobs = [jobs[job_id] for job_id in paused + through]
        v2_jobs = [jobs[job_id] for job_id in after]
        timeline.mark("last version-1 job finished", max(job["finished"] for job in v1_jobs))
        timeline.mark("all version-2 jobs completed", max(job["finished"] for job in v2_jobs))
        listing = workflows_listing(processes, "v2")
        assert line_of(listing, V2.version).split()[2:] == ["0", "2", "current"], listing

        # When the last version-1 worker stops, version 1 is no longer listed
        processes.stop(v1_workers[-1])
        timeline.mark(f"last version-1 worker ({v1_workers[-1]}) stopped")
        listing = workflows_listing(processes, "v2")
        assert f"v{V1.version}" not in listing, listing

    # And each version-1 job ran version 1's graph with its code, each new one version 2's
    def shape(job: dict[str, Any]) -> tuple[Any, ...]:
        return (job["version"], job["plan"], job["ran"], job["code"], job["waits"])

    v1_stages = tuple(step["stage"] for step in V1.plan())
    v2_stages = tuple(step["stage"] for step in V2.plan())
    waited = (("Paused", 1), ("Resumed", 1))
    assert Counter(shape(jobs[job_id]) for job_id in paused) == {
        (V1.version, v1_stages, v1_stages, frozenset({"v1"}), waited): PAUSED}
    assert Counter(shape(jobs[job_id]) for job_id in through) == {
        (V1.version, v1_stages, v1_stages, frozenset({"v1"}), ()): RUNNING_THROUGH}
    assert Counter(shape(job) for job in v2_jobs) == {
        (V2.version, v2_stages, v2_stages, frozenset({"v2"}), ()): AFTER}
