"""Fixtures of the fault tier: the cluster, a command-side app, settings on private servers
for the tests that take one down, and the report of each test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.application import Jobs
from conveyor.settings import Settings
from tests.conftest import migrated_template, scratch_database, settings_for
from tests.faults import effects_workflow
from tests.faults.audit import REPORT
from tests.faults.cluster import Cluster, cluster
from tests.servers import PrivatePostgres, PrivateRabbitMQ


@pytest.fixture
def jobs(settings: Settings) -> Iterator[Jobs]:
    """The command side, in the test process, knowing the effects workflow."""
    app = Jobs(env=settings.eventsourcing_env(),
               workflows={"effects": effects_workflow.effects})
    yield app
    app.close()


@pytest.fixture
def faulty(settings: Settings, tmp_path: Path) -> Iterator[Cluster]:
    with cluster(settings, tmp_path) as found:
        yield found


@pytest.fixture(scope="session")
def private_template(private_postgres: PrivatePostgres) -> Iterator[str]:
    with migrated_template(private_postgres.url) as name:
        yield name


@pytest.fixture
def private_settings(private_postgres: PrivatePostgres, private_template: str,
                     private_rabbitmq: PrivateRabbitMQ) -> Iterator[Settings]:
    """A test's settings on the private servers: its own database and queue there."""
    with scratch_database("conveyor_test", private_template, private_postgres.url) as database:
        yield settings_for(database, f"conveyor-test-{uuid.uuid4().hex[:12]}",
                           private_rabbitmq.url)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("faults: injected and checked")
        for line in REPORT:
            terminalreporter.write_line(line)
