"""`schedules`: each schedule's definition, whether it is paused, and its cursor.

Declared schedules are written by the active relay from the registered modules
(`declare`), keeping their pause and cursor; the last run's status is read from the
`jobs` read model. Each call commits on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

import psycopg
from eventsourcing import persistence
from psycopg.types.json import Jsonb

from conveyor.schedules import (
    CatchUp,
    Overlap,
    Schedule,
    ScheduleExistsError,
    ScheduleNotFoundError,
)
from conveyor.store.tokens import Connect

_COLUMNS = ("s.name, s.cron, s.workflow, s.input, s.timezone, s.catch_up, s.window_seconds,"
            " s.overlap, s.declared, s.paused, s.last_tick, s.last_fired_at, s.last_job_id,"
            " j.status AS last_status")
_FROM = "schedules s LEFT JOIN jobs j ON j.job_id = s.last_job_id"


@dataclass(frozen=True)
class ScheduleState:
    """A stored schedule: its definition, its pause, its cursor and its last run."""

    schedule: Schedule
    declared: bool
    paused: bool
    last_tick: datetime
    last_fired_at: datetime | None
    last_job_id: UUID | None
    last_status: str | None

    def as_dict(self, next_fire: datetime | None) -> dict[str, Any]:
        s = self.schedule
        return {"name": s.name, "cron": s.cron, "workflow": s.workflow, "input": s.input,
                "timezone": s.timezone, "catch_up": s.catch_up.value,
                "window_seconds": None if s.window is None else s.window.total_seconds(),
                "overlap": s.overlap.value, "declared": self.declared, "paused": self.paused,
                "next_fire_at": next_fire, "last_fired_at": self.last_fired_at,
                "last_job_id": self.last_job_id, "last_status": self.last_status}


class ScheduleStore:
    """Reads and writes schedules; `connect` gives an autocommit `dict_row` connection."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect

    def declare(self, schedules: Iterable[Schedule], at: datetime) -> None:
        """Store the code's schedules, new ones counting ticks from `at`."""
        with self.connect() as conn:
            for s in schedules:
                conn.execute(
                    "INSERT INTO schedules (name, cron, workflow, input, timezone, catch_up,"
                    " window_seconds, overlap, declared, last_tick)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, true, %s)"
                    " ON CONFLICT (name) DO UPDATE SET cron = excluded.cron,"
                    " workflow = excluded.workflow, input = excluded.input,"
                    " timezone = excluded.timezone, catch_up = excluded.catch_up,"
                    " window_seconds = excluded.window_seconds, overlap = excluded.overlap,"
                    " declared = true", (*_definition(s), at))

    def create(self, schedule: Schedule, at: datetime) -> ScheduleState:
        """Store a schedule made through the API or CLI, counting its ticks from `at`."""
        try:
            with self.connect() as conn:
                conn.execute(
                    "INSERT INTO schedules (name, cron, workflow, input, timezone, catch_up,"
                    " window_seconds, overlap, declared, last_tick)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, false, %s)",
                    (*_definition(schedule), at))
        # eventsourcing's datastore wraps psycopg's error; a plain connection does not.
        except (psycopg.errors.UniqueViolation, persistence.IntegrityError):
            raise ScheduleExistsError(f"A schedule named {schedule.name!r} exists.") from None
        return self.get(schedule.name)

    def all(self) -> list[ScheduleState]:
        """Every schedule, by name."""
        with self.connect() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM {_FROM} ORDER BY s.name").fetchall()
        return [_state(row) for row in rows]

    def get(self, name: str) -> ScheduleState:
        with self.connect() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM {_FROM} WHERE s.name = %s",
                               (name,)).fetchone()
        if row is None:
            raise ScheduleNotFoundError(f"No schedule named {name!r}.")
        return _state(row)

    def set_paused(self, name: str, paused: bool, at: datetime) -> ScheduleState:
        """Pause or resume; a resumed schedule counts its ticks from `at`, not its pause."""
        with self.connect() as conn:
            found = conn.execute(
                "UPDATE schedules SET paused = %s,"
                " last_tick = CASE WHEN paused AND NOT %s THEN greatest(last_tick, %s)"
                " ELSE last_tick END WHERE name = %s RETURNING name",
                (paused, paused, at, name)).fetchone()
        if found is None:
            raise ScheduleNotFoundError(f"No schedule named {name!r}.")
        return self.get(name)

    def fired(self, name: str, tick: datetime | None, job_id: UUID, at: datetime) -> None:
        """Record a run: its job, and the tick it fired (None: triggered by hand)."""
        with self.connect() as conn:
            conn.execute(
                "UPDATE schedules SET last_job_id = %s, last_fired_at = %s,"
                " last_tick = greatest(last_tick, coalesce(%s, last_tick)) WHERE name = %s",
                (job_id, at, tick, name))

    def passed(self, name: str, tick: datetime) -> None:
        """Move the cursor past a tick that fired nothing (missed, or overlapping)."""
        with self.connect() as conn:
            conn.execute("UPDATE schedules SET last_tick = greatest(last_tick, %s)"
                         " WHERE name = %s", (tick, name))


def _definition(s: Schedule) -> tuple[Any, ...]:
    return (s.name, s.cron, s.workflow, Jsonb(s.input), s.timezone, s.catch_up.value,
            None if s.window is None else s.window.total_seconds(), s.overlap.value)


def _state(row: dict[str, Any]) -> ScheduleState:
    window = row["window_seconds"]
    return ScheduleState(
        Schedule(row["name"], row["cron"], row["workflow"], row["input"], row["timezone"],
                 cast(CatchUp, row["catch_up"]),
                 None if window is None else timedelta(seconds=window),
                 cast(Overlap, row["overlap"])),
        row["declared"], row["paused"], row["last_tick"], row["last_fired_at"],
        row["last_job_id"], row["last_status"])


__all__ = ["ScheduleState", "ScheduleStore"]
