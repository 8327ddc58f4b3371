"""`conveyor workflows migrate`: move a version's jobs in flight onto the current version.

An explicit operator step (docs/architecture.md §3.9): the workflow in this code declares
how jobs of an older version move onto it (`Workflow(..., migrations=...)`), and each job
in flight on that version, as the read model lists them, is moved by `Jobs.migrate`. The
API's `POST /workflow-queue/workflows/{workflow}/migrate` answers the same report.

Exit codes: 0 every job moved or skipped, 1 some blocked by a running stage (run it again
once they finish), 2 no migration declared from that version (or one naming stages the
workflow lacks), or no such workflow.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from conveyor.application import ConflictError, Jobs, Moved, UnknownWorkflowError
from conveyor.settings import Settings
from conveyor.versions import in_flight_jobs
from conveyor.workflows import WorkflowError

__all__ = ["Migration", "add_workflow_arguments", "migrate_version", "run_migrate"]


@dataclass(frozen=True)
class Migration:
    """What moving one version's jobs in flight did, job by job."""

    workflow: str
    from_version: str
    to_version: str
    dry_run: bool
    moved: list[Moved]

    @property
    def counts(self) -> Counter[str]:
        return Counter(move.outcome for move in self.moved)

    def as_json(self) -> dict[str, Any]:
        """The API's answer: the same facts the command prints."""
        return {"workflow": self.workflow, "from": self.from_version, "to": self.to_version,
                "dry_run": self.dry_run,
                **{outcome: self.counts[outcome] for outcome in ("migrated", "skipped",
                                                                 "blocked")},
                "jobs": [{"job_id": str(m.job_id), "outcome": m.outcome, "reason": m.reason}
                         for m in self.moved]}


def migrate_version(jobs: Jobs, conn: psycopg.Connection[Any], workflow: str,
                    from_version: str, *, dry_run: bool = False) -> Migration:
    """Move every job of `workflow` v`from_version` in flight onto the current version.

    Refused (`NoMigrationError`) before any job is read when the workflow declares no
    migration from that version. A job the read model has not shown yet is left for the
    next run, which moves only what the last one left.
    """
    definition = jobs.workflow(workflow)
    definition.migration_from(from_version)
    moved = [_migrate(jobs, job_id, workflow, from_version, dry_run)
             for job_id in in_flight_jobs(conn, workflow, from_version)]
    return Migration(workflow, from_version, definition.version, dry_run, moved)


def _migrate(jobs: Jobs, job_id: UUID, workflow: str, from_version: str,
             dry_run: bool) -> Moved:
    """One job's move; a job whose outcomes kept racing the migration is blocked, not fatal."""
    try:
        return jobs.migrate(job_id, workflow, from_version, dry_run=dry_run)
    except ConflictError as busy:
        return Moved(job_id, "blocked", str(busy))


def add_workflow_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="workflows_action")
    migrate = sub.add_parser("migrate", help="move a version's jobs in flight onto the"
                                             " current version, as the workflow declares")
    migrate.add_argument("workflow")
    migrate.add_argument("--from", dest="from_version", required=True, metavar="VERSION",
                         help="the version whose jobs in flight move")
    migrate.add_argument("--dry-run", action="store_true",
                         help="list what would move and what cannot, storing nothing")


def run_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.bootstrap import build_jobs

    jobs = build_jobs(settings)
    try:
        with psycopg.connect(settings.session_url()) as conn:
            done = migrate_version(jobs, conn, args.workflow, args.from_version,
                                   dry_run=args.dry_run)
    except (WorkflowError, UnknownWorkflowError) as refused:  # none declared, or misdeclared
        print(f"conveyor workflows migrate: {refused}", file=sys.stderr)
        return 2
    finally:
        jobs.close()
    verb = {"migrated": "would migrate" if done.dry_run else "migrated"}
    for move in done.moved:
        print(f"{move.job_id}  {verb.get(move.outcome, move.outcome):<13}  {move.reason}")
    counts = done.counts
    print(f"{done.workflow} v{done.from_version} -> v{done.to_version}:"
          f" {counts['migrated']} {verb['migrated']}, {counts['skipped']} skipped,"
          f" {counts['blocked']} blocked" + (" (run it again once their stages finish)"
                                             if counts["blocked"] else ""))
    return 1 if counts["blocked"] else 0
