"""Start Conveyor's real processes on a scratch database, for the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from conveyor.migrate import migrate

SERVER_URL = os.environ.get(
    "CONVEYOR_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("CONVEYOR_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SECRET = "bench-secret"
CONVEYOR = str(Path(sys.executable).parent / "conveyor")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def scratch_database() -> Iterator[str]:
    """A freshly migrated database, dropped afterwards."""
    name = f"conveyor_bench_{uuid.uuid4().hex[:8]}"
    base = SERVER_URL.rpartition("/")[0]
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(f"{base}/{name}")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Stack:
    database_url: str
    webhooks: str
    api: str
    queue_name: str
    # Each named process's pid: the root of its process tree (gunicorn, dramatiq children).
    pids: dict[str, int] = field(default_factory=dict)


@contextmanager
def running(database_url: str, processes: Sequence[str], **extra_env: str) -> Iterator[Stack]:
    """Run the named `conveyor` processes until the block ends, then SIGTERM them."""
    webhooks_port, api_port = free_port(), free_port()
    queue = f"conveyor-bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": database_url,
        "CONVEYOR_AMQP_URL": AMQP_URL,
        "CONVEYOR_QUEUE_NAME": queue,
        "CONVEYOR_GITHUB_SECRET": SECRET,
        "CONVEYOR_API_READ_TOKENS": "bench",
        "CONVEYOR_WEBHOOKS_BIND": f"127.0.0.1:{webhooks_port}",
        "CONVEYOR_API_BIND": f"127.0.0.1:{api_port}",
        **extra_env,
    }
    started = [
        subprocess.Popen([CONVEYOR, name], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        for name in processes
    ]
    stack = Stack(database_url, f"http://127.0.0.1:{webhooks_port}",
                  f"http://127.0.0.1:{api_port}", queue,
                  {name: p.pid for name, p in zip(processes, started, strict=True)})
    try:
        if "webhooks" in processes:
            wait_for_http(f"{stack.webhooks}/health/live")
        if "api" in processes:
            wait_for_http(f"{stack.api}/health/live")
        yield stack
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for_http(url: str, timeout: float = 30.0) -> float:
    """Wait until `url` answers 200; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bare_save_rate(database_url: str, n: int) -> float:
    """Baseline: one-event aggregates saved per second by `Jobs` on the same database."""
    from conveyor.application import Jobs
    from conveyor.settings import postgres_env

    jobs = Jobs(env=postgres_env(database_url))
    trigger = {"platform": "bench", "repository": "bench/base", "pull_request": "0",
               "head_commit": "0"}
    start = time.perf_counter()
    for i in range(n):
        jobs.enqueue("code_review", f"baseline:{uuid.uuid4()}:{i}", trigger)
    elapsed = time.perf_counter() - start
    jobs.close()
    return n / elapsed
