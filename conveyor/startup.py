"""Starting before PostgreSQL or RabbitMQ is up: wait for it, saying what is awaited and where.

A process started by a supervisor alongside its database or broker should not die on
the first refused connection. It logs that it is waiting, with the address (never the
password), and tries again until it is up or the process is asked to stop, the same as
the processes already ride out a later outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pika
import pika.exceptions
import psycopg

from conveyor.amqp import address, pika_parameters
from conveyor.settings import node_urls, postgres_env

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
# Repeat the waiting line now and then, so a long wait still shows in the log.
REPEAT_EVERY = 30


def postgres_address(url: str) -> str:
    """`host:port` of a PostgreSQL URL; of each host of a multi-host one, comma-separated."""
    env = postgres_env(url)
    hosts, ports = env["POSTGRES_HOST"].split(","), env["POSTGRES_PORT"].split(",")
    # libpq: one port for every host, or one a host (empty: the default).
    ports = ports * len(hosts) if len(ports) == 1 else ports
    return ",".join(f"{host}:{port or 5432}" for host, port in zip(hosts, ports, strict=False))


def rabbitmq_address(url: str) -> str:
    """`host:port` of each node of an AMQP URL."""
    return ", ".join(address(node) for node in node_urls(url))


def _wait(what: str, connect: Callable[[], None], errors: tuple[type[Exception], ...],
          stop: threading.Event) -> bool:
    tries = 0
    while not stop.is_set():
        try:
            connect()
        except errors as error:
            if tries % REPEAT_EVERY == 0:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                log.warning("waiting for %s (%s)", what, reason or type(error).__name__)
            tries += 1
            stop.wait(RETRY_SECONDS)
            continue
        if tries:
            log.info("%s is up", what)
        return True
    return False


def wait_for_postgres(url: str, stop: threading.Event) -> bool:
    """Return once PostgreSQL at `url` accepts a connection; False if stopped first."""

    def connect() -> None:
        psycopg.connect(url, connect_timeout=5).close()

    return _wait(f"PostgreSQL at {postgres_address(url)}", connect,
                 (psycopg.OperationalError,), stop)


def wait_for_rabbitmq(url: str, stop: threading.Event) -> bool:
    """Return once a RabbitMQ node of `url` accepts a connection; False if stopped first."""

    def connect() -> None:
        pika.BlockingConnection(pika_parameters(url)).close()

    return _wait(f"RabbitMQ at {rabbitmq_address(url)}", connect,
                 (pika.exceptions.AMQPError, OSError), stop)
