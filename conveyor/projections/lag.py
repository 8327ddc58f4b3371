"""How far each projection is behind the log: in events, and in seconds of event time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.sql import SQL, Identifier

from conveyor.application import Jobs
from conveyor.projections.batch import APPLICATION
from conveyor.projections.runner import PROJECTIONS
from conveyor.store import datastore_of


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
    # The head and every position in one statement: one round trip per request.
    recorder: Any = app.recorder
    columns = [SQL("({}) AS head").format(recorder.max_notification_id_statement)] + [
        SQL("(SELECT notification_id FROM {} WHERE application_name = %s) AS {}").format(
            Identifier(f"{name}_tracking"), Identifier(name)) for name in names]
    with datastore_of(app).get_connection() as conn, conn.cursor() as curs:
        curs.execute(SQL("SELECT {}").format(SQL(", ").join(columns)),
                     [APPLICATION] * len(names), prepare=True)
        found = curs.fetchone()
    assert found is not None
    head = found["head"] or 0
    positions = {name: found[name] or 0 for name in names}
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
