"""`workflow_workers`: the workflow versions each running worker advertises, with a heartbeat.

Workers write their rows (docs/architecture.md §3.9); `conveyor workflows` and the API read
which versions are served. A row not refreshed within `STALE_AFTER` is a worker gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

__all__ = ["HEARTBEAT_SECONDS", "STALE_AFTER", "WorkerStore", "is_served"]

HEARTBEAT_SECONDS = 5.0
STALE_AFTER = timedelta(seconds=4 * HEARTBEAT_SECONDS)


class WorkerStore:
    """The one owner of `workflow_workers`'s SQL."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def advertise(self, worker_id: str, versions: Mapping[str, str]) -> None:
        """Record (or refresh) that `worker_id` runs these {workflow: version}."""
        with self.conn.transaction():
            self.conn.cursor().executemany(
                "INSERT INTO workflow_workers (worker_id, workflow, version) VALUES (%s, %s, %s)"
                " ON CONFLICT (worker_id, workflow)"
                " DO UPDATE SET version = EXCLUDED.version, seen_at = now()",
                [(worker_id, workflow, version) for workflow, version in versions.items()])

    def withdraw(self, worker_id: str) -> None:
        """The worker stops: its versions are no longer served by it."""
        with self.conn.transaction():
            self.conn.execute("DELETE FROM workflow_workers WHERE worker_id = %s", (worker_id,))

    def served(self) -> dict[tuple[str, str], int]:
        """How many live workers serve each (workflow, version)."""
        rows = self.conn.cursor(row_factory=tuple_row).execute(
            "SELECT workflow, version, count(*) FROM workflow_workers"
            " WHERE seen_at > now() - %s GROUP BY workflow, version", (STALE_AFTER,)).fetchall()
        return {(workflow, version): count for workflow, version, count in rows}


def is_served(served: Mapping[tuple[str, str], int], workflow: str, version: str | None) -> bool:
    """Whether a live worker runs `workflow` at `version` (None: enqueued before versions,
    which every worker of the workflow runs), given `WorkerStore.served()`."""
    return any(count and name == workflow and version in (None, served_version)
               for (name, served_version), count in served.items())
