"""Fixtures of the fault tier: the cluster, a command-side app, and the report of each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.application import Jobs
from conveyor.settings import Settings
from tests.faults import effects_workflow
from tests.faults.audit import REPORT
from tests.faults.cluster import Cluster, cluster


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("faults: injected and checked")
        for line in REPORT:
            terminalreporter.write_line(line)
