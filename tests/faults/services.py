"""PostgreSQL and RabbitMQ stopped and started under a test, always restored afterwards."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import psycopg

from tests.conftest import AMQP_URL, SERVER_URL
from tests.deliveries import github_pull_request
from tests.e2e.stack import request
from tests.faults.cluster import Cluster
from tests.waiting import wait_until


def _cluster_version() -> str:
    (version,) = [p.name for p in Path("/etc/postgresql").iterdir() if p.is_dir()]
    return version


def postgres(action: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", _cluster_version(), "main",
                    action], check=True, capture_output=True, timeout=120)


def rabbitmq(action: str) -> None:
    subprocess.run(["rabbitmqctl", action], check=True, capture_output=True, timeout=120)


def postgres_answers() -> bool:
    try:
        with psycopg.connect(SERVER_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def rabbitmq_answers() -> bool:
    parameters = pika.URLParameters(AMQP_URL)
    parameters.connection_attempts = 1
    parameters.socket_timeout = 2
    try:
        pika.BlockingConnection(parameters).close()
        return True
    except pika.exceptions.AMQPError:
        return False


@contextmanager
def postgres_stopped() -> Iterator[None]:
    """PostgreSQL down for the body; started again, and answering, whatever happens."""
    postgres("stop")
    try:
        yield
    finally:
        postgres("start")
        wait_until(postgres_answers, timeout=60, interval=0.2)


@contextmanager
def rabbitmq_stopped() -> Iterator[None]:
    """RabbitMQ's app down for the body; started again, and answering, whatever happens."""
    rabbitmq("stop_app")
    try:
        yield
    finally:
        rabbitmq("start_app")
        wait_until(rabbitmq_answers, timeout=60, interval=0.2)


def timed(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
          ) -> tuple[int, Any, float]:
    """A request's status, body and how long the answer took."""
    began = time.monotonic()
    status, body = request(url, data, headers)
    return status, body, time.monotonic() - began


def deliver(cluster: Cluster, number: int) -> tuple[int, Any, float]:
    sent = github_pull_request("opened", number=number)
    return timed(f"{cluster.webhooks}{sent.path}", sent.body, sent.headers)


READ = {"Authorization": "Bearer read-token"}
