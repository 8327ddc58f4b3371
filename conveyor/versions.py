"""Each workflow's versions: jobs in flight on each, the workers serving it, and whether it drained.

What `conveyor workflows` prints (docs/architecture.md §3.9): an operator deploying a new
version watches the old one drain (no job of it left in flight) before stopping its workers.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import tuple_row

from conveyor.aggregates.stages import TERMINAL
from conveyor.settings import Settings
from conveyor.store.workers import WorkerStore
from conveyor.workflows import Workflow

__all__ = ["VersionState", "in_flight_jobs", "run_workflows", "workflow_versions"]


@dataclass(frozen=True)
class VersionState:
    """One version of one workflow as the read model and the workers' heartbeats say.

    `version` None gathers the jobs enqueued before versions: every worker with the
    workflow runs them, so its `workers` counts them all.
    """

    workflow: str
    version: str | None
    in_flight: int
    workers: int
    current: bool  # the version this process's code enqueues

    @property
    def drained(self) -> bool:
        """No job of it left in flight and no longer enqueued: its workers may stop."""
        return not self.current and self.in_flight == 0

    def as_json(self) -> dict[str, Any]:
        """The API's shape of it, the same facts `conveyor workflows` prints."""
        return {"workflow": self.workflow, "version": self.version,
                "in_flight": self.in_flight, "workers": self.workers,
                "current": self.current, "drained": self.drained, "state": self.state}

    @property
    def state(self) -> str:
        """current, drained, draining, or waiting (no running worker has it)."""
        if self.current:
            return "current"
        if self.drained:
            return "drained"
        return "draining" if self.workers else "waiting"


NOTES = {"drained": "drained: its workers may stop",
         "waiting": "waiting: no worker runs this version"}


def workflow_versions(conn: psycopg.Connection[Any],
                      workflows: Mapping[str, Workflow]) -> list[VersionState]:
    """Every version with jobs in flight or workers serving it, and each current version."""
    in_flight: dict[tuple[str, str | None], int] = {
        (workflow, version): count for workflow, version, count in conn.cursor(
            row_factory=tuple_row).execute(
            "SELECT workflow, workflow_version, count(*) FROM jobs WHERE status <> ALL(%s)"
            " GROUP BY workflow, workflow_version", ([str(s) for s in TERMINAL],))}
    served: dict[tuple[str, str | None], int] = {}
    for (workflow, version), count in WorkerStore(conn).served().items():
        served[(workflow, version)] = count
        # Every worker with the workflow runs its jobs enqueued before versions.
        served[(workflow, None)] = served.get((workflow, None), 0) + count
    current = {(name, workflow.version) for name, workflow in workflows.items()}
    keys = current | set(in_flight) | {key for key in served if key[1] is not None}
    return [VersionState(workflow, version, in_flight.get((workflow, version), 0),
                         served.get((workflow, version), 0), (workflow, version) in current)
            for workflow, version in sorted(keys, key=lambda k: (k[0], k[1] or ""))]


def in_flight_jobs(conn: psycopg.Connection[Any], workflow: str, version: str) -> list[UUID]:
    """The jobs of `workflow` v`version` the read model shows in flight, oldest first."""
    return [job_id for job_id, in conn.cursor(row_factory=tuple_row).execute(
        "SELECT job_id FROM jobs WHERE workflow = %s AND workflow_version = %s"
        " AND status <> ALL(%s) ORDER BY created_at, job_id",
        (workflow, version, [str(s) for s in TERMINAL]))]


def describe(state: VersionState) -> str:
    """One line of `conveyor workflows`."""
    version = "(none)" if state.version is None else f"v{state.version}"
    return (f"{state.workflow:<20} {version:<11} {state.in_flight:>9} "
            f"{state.workers:>8}  {NOTES.get(state.state, state.state)}")


def run_workflows(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.bootstrap import load_workflows

    with psycopg.connect(settings.session_url()) as conn:
        states = workflow_versions(conn, load_workflows(settings))
    print(f"{'WORKFLOW':<20} {'VERSION':<11} {'IN FLIGHT':>9} {'WORKERS':>8}  STATE")
    for state in states:
        print(describe(state))
    return 0
