"""How far each projection is behind the log: in events, and in seconds of event time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.sql import SQL, Identifier

from conveyor.application import Jobs
from conveyor.projections.batch import APPLICATION
from conveyor.projections.runner import PROJECTIONS, datastore_of


@dataclass(frozen=True)
class Lag:
    """One projection's position against the head of the log."""

    projection: str
    position: int
    head: int
    events: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"projection": self.projection, "position": self.position, "head": self.head,
                "events_behind": self.events, "seconds_behind": round(self.seconds, 3)}


def measure_lag(app: Jobs, names: tuple[str, ...] = tuple(PROJECTIONS)) -> list[Lag]:
    """Each projection's lag; seconds are the age of the oldest event it has not applied."""
    head = app.recorder.max_notification_id() or 0
    positions: dict[str, int] = {}
    with datastore_of(app).get_connection() as conn, conn.cursor() as curs:
        for name in names:
            curs.execute(SQL("SELECT notification_id FROM {} WHERE application_name = %s")
                         .format(Identifier(f"{name}_tracking")), (APPLICATION,))
            found = curs.fetchone()
            positions[name] = (found["notification_id"] if found else 0) or 0
    now = datetime.now(UTC)
    ages: dict[int, float] = {}
    lags = []
    for name, position in positions.items():
        if position < head and position not in ages:
            notes = app.recorder.select_notifications(position, 1, inclusive_of_start=False)
            event = app.mapper.to_domain_event(notes[0]) if notes else None
            at: datetime | None = getattr(event, "timestamp", None)
            ages[position] = (now - at).total_seconds() if at else 0.0
        seconds = ages.get(position, 0.0) if position < head else 0.0
        lags.append(Lag(name, position, head, max(0, head - position), max(0.0, seconds)))
    return lags
