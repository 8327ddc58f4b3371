"""Shared fixtures: a fresh database cloned from a migrated template, and private queue names."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from conveyor.application import Jobs
from conveyor.bootstrap import build_jobs
from conveyor.settings import Settings
from tests.deliveries import GITHUB_SECRET

if TYPE_CHECKING:
    from tests.servers import PrivatePostgres, PrivateRabbitMQ

ROOT = Path(__file__).resolve().parent.parent
SERVER_URL = os.environ.get(
    "CONVEYOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("CONVEYOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def database_url(name: str, server_url: str = SERVER_URL) -> str:
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if tier in ("integration", "e2e", "faults", "ha", "browser", "conformance"):
            item.add_marker(getattr(pytest.mark, tier))


@contextmanager
def migrated_template(server_url: str) -> Iterator[str]:
    """A database on the server with every migration applied, to clone for each test."""
    from conveyor.migrate import migrate

    name = f"conveyor_tpl_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(database_url(name, server_url))
    yield name
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_database(prefix: str, template: str | None = None,
                     server_url: str = SERVER_URL) -> Iterator[str]:
    """The URL of a database of its own, a copy of `template` or empty, dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield database_url(name, server_url)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_for(database: str, queue_name: str, amqp_url: str = AMQP_URL) -> Settings:
    """A test's settings: its database, queue and broker, with the tests' tokens."""
    return Settings(
        database_url=database,
        amqp_url=amqp_url,
        queue_name=queue_name,
        github_secret=GITHUB_SECRET,
        api_read_tokens=frozenset({"read-token"}),
        api_write_tokens=frozenset({"write-token", "admin-token"}),
        api_admin_tokens=frozenset({"admin-token"}),
        relay_poll_seconds=0.2,
    )


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    """A database with every migration applied, cloned by each test that needs one."""
    with migrated_template(SERVER_URL) as name:
        yield name


@pytest.fixture
def database(template_database: str) -> Iterator[str]:
    """The URL of a fresh, migrated database of this test's own."""
    with scratch_database("conveyor_test", template_database) as url:
        yield url


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL of this run's own, for tests that stop or restart it."""
    from tests.servers import private_postgres

    with private_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of this run's own, for tests that stop it or close its connections."""
    from tests.servers import private_rabbitmq

    with private_rabbitmq() as node:
        yield node


# Every queue name the `queue_name` fixture gave out in this session, for the sweep at its end.
QUEUE_NAMES: set[str] = set()


def _delete_queues(names: Iterable[str]) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for queue in names:
            channel.queue_delete(queue)
    finally:
        connection.close()


@pytest.fixture
def queue_name() -> Iterator[str]:
    """A RabbitMQ queue name of this test's own, deleted (with Dramatiq's siblings) after."""
    name = f"conveyor-test-{uuid.uuid4().hex[:12]}"
    QUEUE_NAMES.add(name)
    yield name
    _delete_queues((name, f"{name}.DQ", f"{name}.XQ"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Delete the queues named after this session's test queues that their tests cannot name:
    one per workflow version (`<queue>.<workflow>.v<version>`, docs §3.9) and its siblings.
    Only the machine's RabbitMQ CLI lists queues by name; without it they are left."""
    import subprocess

    if not QUEUE_NAMES:
        return
    try:
        listed = subprocess.run(["rabbitmqctl", "list_queues", "name", "--quiet",
                                 "--no-table-headers"], capture_output=True, text=True,
                                timeout=60, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return
    # pytest has closed the streams its log capture wrote to; pika's close would log there.
    logging.getLogger("pika").setLevel(logging.WARNING)
    _delete_queues(queue for queue in listed
                   if queue.partition(".")[0] in QUEUE_NAMES and "." in queue)


@pytest.fixture
def settings(database: str, queue_name: str) -> Settings:
    return settings_for(database, queue_name)


@pytest.fixture
def jobs(settings: Settings) -> Iterator[Jobs]:
    """The command side on this test's database, configured as `settings` say."""
    app = build_jobs(settings)
    yield app
    app.close()


@pytest.fixture
def spans() -> Iterator[Any]:
    """Tracing on, into memory: the spans finished while the test runs, read back."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from conveyor import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
