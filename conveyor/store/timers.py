"""`relay_timers`: durable timers, so a retry or a deadline outlives any process.

Only the relay writes them, in its own transactions: a retry's timer in the batch
that relays its `StageFailed`, a wait's deadline in the batch that relays its `Paused`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow


class TimerKind(StrEnum):
    DISPATCH = "dispatch"  # a retry or a rate-limited attempt falls due: send the attempt
    WAIT = "wait"  # a wait's deadline: apply its on-timeout policy


class Timer(NamedTuple):
    """What falls due when: the stage attempt, the time, and what to do then."""

    job_id: UUID
    stage: str
    attempt: int
    due_at: datetime
    kind: TimerKind


class TimerStore:
    """Sets, finds and deletes timers inside the caller's transaction.

    It remembers the earliest time it set, so the relay that owns it need not ask the
    table when to wake (`set_due`).
    """

    def __init__(self) -> None:
        self._set_due: datetime | None = None

    def set(self, curs: Cursor[DictRow], timers: Sequence[Timer]) -> None:
        """Set each timer unless one of its kind is already set for that attempt."""
        if not timers:
            return  # psycopg's executemany would still spend a round trip on none
        curs.executemany(
            "INSERT INTO relay_timers (job_id, stage, attempt, due_at, kind)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(t.job_id, t.stage, t.attempt, t.due_at, t.kind.value) for t in timers],
        )
        earliest = min(t.due_at for t in timers)
        self._set_due = earliest if self._set_due is None else min(self._set_due, earliest)

    def set_due(self) -> datetime | None:
        """The earliest due time set since the last call, if any."""
        due, self._set_due = self._set_due, None
        return due

    def take_due(self, curs: Cursor[DictRow], now: datetime, limit: int) -> list[Timer]:
        """The timers due by `now`, earliest first, locked until the transaction ends."""
        rows = curs.execute(
            "SELECT job_id, stage, attempt, due_at, kind FROM relay_timers WHERE due_at <= %s"
            " ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        ).fetchall()
        return [Timer(row["job_id"], row["stage"], row["attempt"], row["due_at"],
                      TimerKind(row["kind"])) for row in rows]

    def delete(self, curs: Cursor[DictRow], timers: Iterable[Timer]) -> None:
        curs.executemany(
            "DELETE FROM relay_timers"
            " WHERE job_id = %s AND stage = %s AND attempt = %s AND kind = %s",
            [(t.job_id, t.stage, t.attempt, t.kind.value) for t in timers],
        )

    def delete_waits(self, curs: Cursor[DictRow], job_id: UUID) -> None:
        """Forget the job's wait deadlines: the job ended."""
        curs.execute(
            "DELETE FROM relay_timers WHERE job_id = %s AND kind = %s",
            (job_id, TimerKind.WAIT.value),
        )

    def next_due(self, curs: Cursor[DictRow]) -> datetime | None:
        row = curs.execute("SELECT min(due_at) AS due_at FROM relay_timers").fetchone()
        return None if row is None else row["due_at"]
