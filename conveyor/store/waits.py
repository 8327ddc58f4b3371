"""`relay_waits` and `relay_outside_events`: the wait matcher's state.

Written on the relay's connection inside its batch transaction, together with the
relay's position, so the tables say exactly what the log says up to that position.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb


class Wait(NamedTuple):
    """A stage attempt paused for an outside event of `event_type` and `key`."""

    job_id: UUID
    stage: str
    attempt: int
    event_type: str
    key: str
    deadline: datetime
    paused_at: datetime
    # The job's organisation: only events sent for it, or for every one, resume the wait.
    organization: str | None
    # The version of the job's `Paused`: its waits in log order.
    paused_version: int


class Waiting(NamedTuple):
    """The stage attempt an arriving event may resume."""

    job_id: UUID
    stage: str
    attempt: int


class Kept(NamedTuple):
    """An outside event kept for a pause that may come after it."""

    event_id: str
    payload: Any
    # The trace the event was sent in, if it carried one.
    traceparent: str | None


class WaitStore:
    """Open waits and recent outside events, inside the caller's transaction."""

    def open(self, curs: Cursor[DictRow], wait: Wait) -> None:
        """Record the wait; a later pause of the same stage replaces it."""
        curs.execute(
            "INSERT INTO relay_waits (job_id, stage, attempt, event_type, key, deadline,"
            " paused_at, organization, paused_version)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (job_id, stage) DO UPDATE SET attempt = excluded.attempt,"
            " event_type = excluded.event_type, key = excluded.key,"
            " deadline = excluded.deadline, paused_at = excluded.paused_at,"
            " organization = excluded.organization, paused_version = excluded.paused_version",
            wait,
        )

    def close(self, curs: Cursor[DictRow], job_id: UUID, stage: str | None) -> None:
        """Forget the job's wait at `stage`, or all its waits."""
        if stage is None:
            curs.execute("DELETE FROM relay_waits WHERE job_id = %s", (job_id,))
        else:
            curs.execute(
                "DELETE FROM relay_waits WHERE job_id = %s AND stage = %s", (job_id, stage)
            )

    def rename(self, curs: Cursor[DictRow], job_id: UUID, renamed: dict[str, str]) -> None:
        """Give the job's waits at the `renamed` stages their new names (a migration's).

        Taken out and put back, so that names swapped between two stages never collide.
        """
        moved = curs.execute(
            "DELETE FROM relay_waits WHERE job_id = %s AND stage = ANY(%s) RETURNING job_id,"
            " stage, attempt, event_type, key, deadline, paused_at, organization, paused_version",
            (job_id, list(renamed))).fetchall()
        for row in moved:
            self.open(curs, Wait(**{**row, "stage": renamed[row["stage"]]}))

    def waiting_for(self, curs: Cursor[DictRow], event_type: str, key: str,
                    organizations: list[str] | None) -> list[Waiting]:
        """The waits an event of `event_type` and `key`, sent for `organizations`, may resume;
        each job's in log order."""
        rows = curs.execute(
            "SELECT job_id, stage, attempt FROM relay_waits WHERE event_type = %s AND key = %s"
            " AND (%s::text[] IS NULL OR organization = ANY(%s::text[]))"
            " ORDER BY job_id, paused_version, paused_at",
            (event_type, key, organizations, organizations),
        ).fetchall()
        return [Waiting(row["job_id"], row["stage"], row["attempt"]) for row in rows]

    def keep(
        self,
        curs: Cursor[DictRow],
        event_id: str,
        event_type: str,
        key: str,
        payload: Any,
        received_at: datetime,
        organizations: list[str] | None,
        traceparent: str | None = None,
    ) -> None:
        """Keep an outside event for the retention window; a repeated id is kept once."""
        curs.execute(
            "INSERT INTO relay_outside_events (event_id, event_type, key, payload, received_at,"
            " organizations, traceparent) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (event_id, event_type, key, Jsonb(payload), received_at, organizations,
             traceparent),
        )

    def earliest_kept(
        self, curs: Cursor[DictRow], event_type: str, key: str, since: datetime,
        organization: str | None, excluding: Collection[str] = (),
    ) -> Kept | None:
        """The first kept event of `event_type` and `key` received since `since` that may
        resume a wait of `organization`, other than the events `excluding`."""
        row = curs.execute(
            "SELECT event_id, payload, traceparent FROM relay_outside_events"
            " WHERE event_type = %s AND key = %s AND received_at >= %s"
            " AND (organizations IS NULL OR %s = ANY(organizations))"
            " AND event_id <> ALL(%s::text[]) ORDER BY received_at LIMIT 1",
            (event_type, key, since, organization, list(excluding)),
        ).fetchone()
        return None if row is None else Kept(row["event_id"], row["payload"],
                                             row["traceparent"])

    def forget_kept(self, curs: Cursor[DictRow], before: datetime) -> None:
        """Drop the outside events received before `before`: past retention."""
        curs.execute("DELETE FROM relay_outside_events WHERE received_at < %s", (before,))
