"""Conveyor's real processes under a test's supervision: start, kill, stop, restart.

Unlike `tests.e2e.stack.running`, a fault test needs each process as a handle it can
kill -9, freeze or SIGTERM and then restart, as a production supervisor would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from conveyor.settings import Settings
from tests.conftest import ROOT
from tests.e2e.stack import CONVEYOR, free_port, process_env, request
from tests.faults import effects_workflow
from tests.waiting import wait_until

TERMINAL = ("Completed", "Failed", "Cancelled")
# SIGTERM grace periods: gunicorn's graceful_timeout is 20 s, the others finish a stage.
GRACE_SECONDS = 30.0


@dataclass
class Process:
    """One `conveyor <command>` process, restartable; its log appends across restarts."""

    name: str
    command: str
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                [CONVEYOR, self.command], env=self.env, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def children(self) -> list[int]:
        """The pids of this process's children (Dramatiq's worker processes, gunicorn's)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def kill(self) -> None:
        """kill -9 the whole process group, as a crashed host or an OOM kill would."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        assert self.popen is not None
        self.popen.wait(10)

    def terminate(self, timeout: float = GRACE_SECONDS) -> tuple[int, float]:
        """SIGTERM and wait; return the exit code and how long the exit took."""
        assert self.popen is not None
        began = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} ignored SIGTERM for {timeout}s:\n{self.tail()}") from None
        return code, time.monotonic() - began

    def reap(self) -> None:
        """Whatever is left of the process group, killed (cleanup only)."""
        if self.popen is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(10)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    """The processes of one fault test, and the database and settings they share."""

    settings: Settings
    env: dict[str, str]
    logs: Path
    processes: dict[str, Process] = field(default_factory=dict)
    webhooks: str = ""
    api: str = ""

    @property
    def url(self) -> str:
        assert self.settings.database_url
        return self.settings.database_url

    def add(self, name: str, command: str | None = None, **extra: str) -> Process:
        process = Process(name, command or name, {**self.env, **extra}, self.logs / f"{name}.log")
        self.processes[name] = process
        process.start()
        return process

    def __getitem__(self, name: str) -> Process:
        return self.processes[name]

    def wait_http(self, name: str) -> None:
        base = self.webhooks if name == "webhooks" else self.api

        def answers() -> bool:
            try:
                return request(f"{base}/health/live")[0] == 200
            except OSError:
                return False

        try:
            wait_until(answers, timeout=30, interval=0.1)
        except AssertionError:
            raise AssertionError(f"{name} did not answer:\n{self[name].tail()}") from None

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as conn:
            return conn.execute(sql, params).fetchall()

    def count(self, sql: str, params: Any = None) -> int:
        return int(self.query(sql, params)[0][0])

    def terminal_jobs(self) -> int:
        return self.count(
            "SELECT count(DISTINCT originator_id) FROM jobs_events"
            " WHERE topic ~ ':Job\\.(Completed|Failed|Cancelled)$'"
        )

    def leases(self) -> list[tuple[UUID, str, int, str]]:
        return [(r[0], r[1], r[2], r[3]) for r in self.query(
            "SELECT job_id, stage, attempt, worker FROM stage_leases")]

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every process still running; return their exit codes."""
        codes = {}
        for process in self.processes.values():
            if process.alive():
                process.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for name, process in self.processes.items():
            if process.popen is not None and process.popen.returncode is None:
                try:
                    codes[name] = process.popen.wait(GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    codes[name] = -9
            process.reap()
        return codes


@contextmanager
def cluster(settings: Settings, logs: Path, **extra: str) -> Iterator[Cluster]:
    """A cluster over the test's database, with the effects tables and workflow installed."""
    assert settings.database_url and settings.github_secret
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for statement in effects_workflow.SCHEMA:
            conn.execute(statement)
    webhooks_port, api_port = free_port(), free_port()
    env = process_env(
        settings, webhooks_port, api_port,
        # The worker imports the test workflow from this checkout's tests package.
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        CONVEYOR_WORKFLOW_MODULES="tests.faults.effects_workflow",
        CONVEYOR_WORKER_THREADS="4",
        CONVEYOR_LEASE_GRACE_SECONDS="1",
        # Kills are frequent here; a job must not fail as stuck because of bad luck.
        CONVEYOR_MAX_RECOVERIES="50",
        **extra,
    )
    found = Cluster(settings, env, logs, webhooks=f"http://127.0.0.1:{webhooks_port}",
                    api=f"http://127.0.0.1:{api_port}")
    try:
        yield found
    finally:
        found.stop_all()
