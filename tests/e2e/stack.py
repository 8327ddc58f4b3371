"""Conveyor's real processes for end-to-end tests, started and stopped around a test."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from conveyor.settings import Settings
from tests.deliveries import Delivery
from tests.waiting import wait_until

CONVEYOR = str(Path(sys.executable).parent / "conveyor")
PROCESSES = ("webhooks", "api", "worker", "relay", "projector")


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_PICK = random.SystemRandom()  # not the tests' seeded `random`: two runs pick apart
_given: set[int] = set()


def free_port() -> int:
    """A port free to listen on, below the kernel's range for outgoing connections: a port
    the kernel picked from that range (bind to 0) can be taken by a client's socket before
    its server binds it, or while a stopped server is away, and the server then fails to
    start with `eaddrinuse`."""
    while True:
        port = _PICK.randrange(max(1024, _EPHEMERAL_LOW - 12000), _EPHEMERAL_LOW)
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # a server of the machine's, or of another run, listens there
        _given.add(port)
        return port


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
    env: dict[str, str]

    def job(self, job_id: str) -> tuple[int, Any]:
        return request(f"{self.api}/workflow-queue/jobs/{job_id}",
                       headers={"Authorization": "Bearer read-token"})

    def job_when(self, job_id: str, status: str, timeout: float = 30) -> Any:
        def reached() -> Any:
            code, job = self.job(job_id)
            return job if code == 200 and job["status"] == status else None

        return wait_until(reached, timeout=timeout)

    def count_jobs(self) -> int:
        assert self.settings.database_url
        with psycopg.connect(self.settings.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM jobs_events WHERE topic LIKE '%:Job.Enqueued'"
            ).fetchone()
            return int(row[0]) if row else 0


def process_env(settings: Settings, webhooks_port: int, api_port: int, **extra: str
                ) -> dict[str, str]:
    """The environment of a test's processes: its database, queue, tokens and ports."""
    assert settings.database_url and settings.github_secret
    return {
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
        **extra,
    }


@contextmanager
def running(
    settings: Settings, logs: Path, processes: Sequence[str] = PROCESSES, **extra: str
) -> Iterator[Stack]:
    """Run `conveyor <process>` for each process; SIGTERM them after, each must exit."""
    webhooks_port, api_port = free_port(), free_port()
    env = process_env(settings, webhooks_port, api_port, **extra)
    started = {}
    for name in processes:
        with (logs / f"{name}.log").open("wb") as log:
            started[name] = subprocess.Popen(
                [CONVEYOR, name], env=env, stdout=subprocess.DEVNULL, stderr=log
            )
    stack = Stack(f"http://127.0.0.1:{webhooks_port}", f"http://127.0.0.1:{api_port}",
                  settings, env)
    try:
        for name, base in (("webhooks", stack.webhooks), ("api", stack.api)):
            if name in processes:
                wait_until(lambda base=base: _answers(f"{base}/health/live"), timeout=30)
        yield stack
    finally:
        for process in started.values():
            process.send_signal(signal.SIGTERM)
        for name, process in started.items():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                pytest.fail(f"{name} ignored SIGTERM:\n{(logs / f'{name}.log').read_text()}")


def _answers(url: str) -> bool:
    try:
        return request(url)[0] == 200
    except OSError:
        return False


def conveyor(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a `conveyor` command as a user would, on `database` and no other setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run([CONVEYOR, *args], env={**env, "CONVEYOR_DATABASE_URL": database},
                          capture_output=True, text=True, timeout=60)


def send(stack: Stack, delivery: Delivery) -> tuple[int, Any]:
    """Post a delivery to the real webhook process; return the status and JSON answer."""
    return request(f"{stack.webhooks}{delivery.path}", delivery.body, delivery.headers)
