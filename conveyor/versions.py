"""Each workflow's versions: jobs in flight on each, the workers serving it, and whether it drained.

What `conveyor workflows` prints (docs/architecture.md §3.8): an operator deploying a new
version watches the old one drain (no job of it left in flight) before stopping its workers.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from conveyor.aggregates.stages import TERMINAL, plan_version
from conveyor.settings import Settings
from conveyor.store.workers import WorkerStore
from conveyor.workflows import Workflow

__all__ = ["VersionState", "run_workflows", "workflow_versions"]


@dataclass(frozen=True)
class VersionState:
    """One version of one workflow as the read model and the workers' heartbeats say."""

    workflow: str
    version: str
    in_flight: int
    workers: int
    current: bool  # the version this process's code enqueues

    @property
    def drained(self) -> bool:
        """No job of it left in flight and no longer enqueued: its workers may stop."""
        return not self.current and self.in_flight == 0


def workflow_versions(conn: psycopg.Connection[Any],
                      workflows: Mapping[str, Workflow]) -> list[VersionState]:
    """Every version with jobs in flight or workers serving it, and each current version."""
    in_flight: dict[tuple[str, str], int] = {}
    rows = conn.execute(
        "SELECT workflow, workflow_version, CASE WHEN workflow_version IS NULL"
        " THEN plan::text END, count(*) FROM jobs WHERE status <> ALL(%s)"
        " GROUP BY 1, 2, 3", ([str(s) for s in TERMINAL],)).fetchall()
    for workflow, version, plan, count in rows:
        # Rows projected before versions: the version their plan derives.
        key = (workflow, version or plan_version(orjson.loads(plan)))
        in_flight[key] = in_flight.get(key, 0) + count
    served = WorkerStore(conn).served()
    current = {(name, workflow.version) for name, workflow in workflows.items()}
    return [VersionState(workflow, version, in_flight.get((workflow, version), 0),
                         served.get((workflow, version), 0), (workflow, version) in current)
            for workflow, version in sorted(current | set(in_flight) | set(served))]


def describe(state: VersionState) -> str:
    """One line of `conveyor workflows`."""
    if state.current:
        note = "current"
    elif state.drained:
        note = "drained: its workers may stop"
    elif state.workers == 0:
        note = "waiting: no worker runs this version"
    else:
        note = "draining"
    return (f"{state.workflow:<20} v{state.version:<10} {state.in_flight:>9} "
            f"{state.workers:>8}  {note}")


def run_workflows(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.bootstrap import load_workflows

    with psycopg.connect(settings.session_url()) as conn:
        states = workflow_versions(conn, load_workflows(settings))
    print(f"{'WORKFLOW':<20} {'VERSION':<11} {'IN FLIGHT':>9} {'WORKERS':>8}  STATE")
    for state in states:
        print(describe(state))
    return 0
