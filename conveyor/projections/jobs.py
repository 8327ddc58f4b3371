"""The `jobs` read model: one row per job, kept by eventsourcing's projection runner."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from conveyor.aggregates import Job, StageState
from conveyor.aggregates.job import derive_status, ready_stages

Row = dict[str, Any]
_COLUMNS = (
    "job_id", "workflow", "status", "platform", "repository", "pull_request", "head_commit",
    "trigger", "plan", "stage_states", "current_stages", "stages", "error", "next_attempt_at",
    "version", "created_at", "started_at", "finished_at", "updated_at",
)
_JSON = {"trigger", "plan", "stage_states", "stages", "error"}
_UPSERT = (
    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
    f" ON CONFLICT (job_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
)
_ACTIVE = {StageState.RUNNING, StageState.WAITING, StageState.RETRY_SCHEDULED}


class JobsView(PostgresTrackingRecorder):
    """The `jobs` table; each change is written with its tracking record in one transaction."""

    def change(self, job_id: UUID, tracking: Tracking, update: Callable[[Row | None], Row]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT * FROM jobs WHERE job_id = %s FOR UPDATE", (job_id,))
            current = curs.fetchone()
            row = update(dict(current) if current else None)
            curs.execute(
                _UPSERT,
                [Jsonb(row[c]) if c in _JSON and row[c] is not None else row[c] for c in _COLUMNS],
            )
            self._insert_tracking(curs, tracking)

    def get(self, job_id: UUID) -> Row | None:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=dict_row) as curs:
            curs.execute("SELECT * FROM jobs WHERE job_id = %s", (job_id,))
            return curs.fetchone()


def _stage_entry(row: Row, stage: str, attempt: int) -> dict[str, Any]:
    for entry in reversed(row["stages"]):
        if entry["stage"] == stage and entry["attempt"] == attempt:
            return dict(entry)
    return {"stage": stage, "attempt": attempt, "status": "running", "started_at": None}


def _set_entry(row: Row, entry: dict[str, Any]) -> None:
    stages = [e for e in row["stages"]
              if (e["stage"], e["attempt"]) != (entry["stage"], entry["attempt"])]
    row["stages"] = [*stages, entry]


class JobsProjection(Projection[JobsView]):
    """Turns Job events into `jobs` rows; events it does not use are still tracked."""

    name = "jobs"

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    def _change(self, event: Any, tracking: Tracking, update: Callable[[Row], None]) -> None:
        def apply(row: Row | None) -> Row:
            assert row is not None, f"event {event} for a job the read model lacks"
            update(row)
            row["version"] = event.originator_version
            row["updated_at"] = event.timestamp
            finished = row["finished_at"] is not None
            states = row["stage_states"]
            row["status"] = str(derive_status(
                row["plan"], states, started=row["started_at"] is not None,
                terminal=row["status"] if finished else None,
            ))
            ready = set() if finished else set(ready_stages(row["plan"], states))
            row["current_stages"] = [] if finished else [
                s["stage"] for s in row["plan"]
                if s["stage"] in ready or states[s["stage"]] in _ACTIVE
            ]
            return row

        self.view.change(event.originator_id, tracking, apply)

    @process_event.register
    def enqueued(self, event: Job.Enqueued, tracking: Tracking) -> None:
        trigger = event.trigger
        plan = event.plan
        stage_states = {s["stage"]: str(StageState.PENDING) for s in plan}

        def insert(_: Row | None) -> Row:
            return {
                "job_id": event.originator_id, "workflow": event.workflow,
                "status": "PENDING", "platform": trigger.get("platform"),
                "repository": trigger.get("repository"),
                "pull_request": trigger.get("pull_request"),
                "head_commit": trigger.get("head_commit"),
                "trigger": trigger, "plan": plan, "stage_states": stage_states,
                "current_stages": ready_stages(plan, stage_states), "stages": [],
                "error": None, "next_attempt_at": None, "version": event.originator_version,
                "created_at": event.timestamp, "started_at": None, "finished_at": None,
                "updated_at": event.timestamp,
            }

        self.view.change(event.originator_id, tracking, insert)

    @process_event.register
    def started(self, event: Job.Started, tracking: Tracking) -> None:
        def update(row: Row) -> None:
            row["started_at"] = row["started_at"] or event.at
            row["stage_states"][event.stage] = StageState.RUNNING
            _set_entry(row, {"stage": event.stage, "attempt": event.attempt,
                             "status": "running", "started_at": event.at.isoformat()})
        self._change(event, tracking, update)

    @process_event.register
    def stage_completed(self, event: Job.StageCompleted, tracking: Tracking) -> None:
        def update(row: Row) -> None:
            row["stage_states"][event.stage] = StageState.DONE
            entry = _stage_entry(row, event.stage, event.attempt)
            _set_entry(row, {**entry, "status": "completed", "finished_at": event.at.isoformat()})
        self._change(event, tracking, update)

    @process_event.register
    def stage_failed(self, event: Job.StageFailed, tracking: Tracking) -> None:
        def update(row: Row) -> None:
            retrying = event.retry_at is not None
            row["stage_states"][event.stage] = (
                StageState.RETRY_SCHEDULED if retrying else StageState.FAILED
            )
            row["next_attempt_at"] = event.retry_at
            row["error"] = {"stage": event.stage, "classification": event.classification,
                            "error": event.error}
            entry = _stage_entry(row, event.stage, event.attempt)
            _set_entry(row, {**entry, "status": "failed", "finished_at": event.at.isoformat(),
                             "error": event.error, "classification": event.classification})
        self._change(event, tracking, update)

    @process_event.register
    def paused(self, event: Job.Paused, tracking: Tracking) -> None:
        def update(row: Row) -> None:
            row["stage_states"][event.stage] = StageState.WAITING
        self._change(event, tracking, update)

    @process_event.register
    def resumed(self, event: Job.Resumed, tracking: Tracking) -> None:
        def update(row: Row) -> None:
            row["stage_states"][event.stage] = StageState.PENDING
        self._change(event, tracking, update)

    @process_event.register
    def wait_timed_out(self, event: Job.WaitTimedOut, tracking: Tracking) -> None:
        def update(row: Row) -> None:
            row["stage_states"][event.stage] = StageState.PENDING
        self._change(event, tracking, update)

    @process_event.register
    def recovered(self, event: Job.Recovered, tracking: Tracking) -> None:
        def update(row: Row) -> None:
            row["stage_states"][event.stage] = StageState.PENDING
        self._change(event, tracking, update)

    @process_event.register
    def retried(self, event: Job.Retried, tracking: Tracking) -> None:
        def update(row: Row) -> None:
            for stage, state in row["stage_states"].items():
                if state in (StageState.FAILED, StageState.RUNNING, StageState.WAITING):
                    row["stage_states"][stage] = StageState.PENDING
            row["finished_at"] = None
            row["error"] = None
        self._change(event, tracking, update)

    @process_event.register
    def completed(self, event: Job.Completed, tracking: Tracking) -> None:
        self._finish(event, tracking, "COMPLETED", event.at)

    @process_event.register
    def failed(self, event: Job.Failed, tracking: Tracking) -> None:
        error = {"stage": event.stage, "classification": event.classification,
                 "error": event.error}
        self._finish(event, tracking, "FAILED", event.at, error)

    @process_event.register
    def cancelled(self, event: Job.Cancelled, tracking: Tracking) -> None:
        self._finish(event, tracking, "CANCELLED", event.at)

    def _finish(
        self, event: Any, tracking: Tracking, status: str, at: datetime, error: Any = None
    ) -> None:
        def update(row: Row) -> None:
            row["error"] = error or row["error"]
            row["status"] = status
            row["finished_at"] = at
            row["next_attempt_at"] = None
        self._change(event, tracking, update)
