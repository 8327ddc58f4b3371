"""`relay_dispatches`: the stage attempts held for fair dispatch, and those in flight.

Only the active relay writes it, in its batch transactions (with its position), so
the table always says what the relay had decided as of its recorded position: a relay
that becomes active rebuilds its held queue and in-flight counts from it
(docs/architecture.md §3.7). A batch's changes are gathered and written at its end in
at most three statements; an attempt held and ended within one batch writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow

from conveyor.relay.fair import Dispatch, Key

__all__ = ["DispatchStore", "TenantLoad"]

_KEY_COLUMNS = "%s::uuid[], %s::text[], %s::integer[]"
_MATCH = "d.job_id = u.job_id AND d.stage = u.stage AND d.attempt = u.attempt"


@dataclass(frozen=True)
class TenantLoad:
    """One organisation's attempts in flight and held, as the table says."""

    organization: str
    running: int
    held: int


class DispatchStore:
    """Loads the table, and writes one batch's changes to it inside the caller's transaction."""

    def __init__(self) -> None:
        self._new: dict[Key, tuple[Dispatch, datetime | None]] = {}
        self._sends: dict[Key, datetime] = {}
        self._ends: set[Key] = set()

    def load(self, curs: Cursor[DictRow]) -> list[tuple[Dispatch, bool]]:
        """Every held or in-flight attempt, oldest first, and whether it was sent."""
        rows = curs.execute(
            "SELECT job_id, stage, attempt, organization, priority, held_at, sent_at"
            " FROM relay_dispatches ORDER BY held_at").fetchall()
        return [(Dispatch(Key(r["job_id"], r["stage"], r["attempt"]), r["organization"],
                          r["priority"], r["held_at"]), r["sent_at"] is not None) for r in rows]

    @staticmethod
    def lost(curs: Cursor[DictRow], sent_before: datetime, limit: int) -> list[Key]:
        """The attempts in flight since before `sent_before` that no worker has a lease on:
        their message was lost, or is still queued (docs/architecture.md §4.3)."""
        rows = curs.execute(
            "SELECT job_id, stage, attempt FROM relay_dispatches d WHERE sent_at < %s"
            " AND NOT EXISTS (SELECT FROM stage_leases l WHERE l.job_id = d.job_id"
            " AND l.stage = d.stage AND l.attempt = d.attempt) ORDER BY sent_at LIMIT %s",
            (sent_before, limit)).fetchall()
        return [Key(r["job_id"], r["stage"], r["attempt"]) for r in rows]

    # A batch's changes, written by `flush` -------------------------------------

    def held(self, dispatch: Dispatch) -> None:
        self._new[dispatch.key] = (dispatch, None)

    def sent(self, dispatch: Dispatch, at: datetime) -> None:
        if dispatch.key in self._new:
            self._new[dispatch.key] = (dispatch, at)
        else:
            self.resent(dispatch.key, at)

    def resent(self, key: Key, at: datetime) -> None:
        """An attempt in flight sent again (by a relay that became active), at `at`."""
        self._sends[key] = at

    def ended(self, key: Key) -> None:
        if self._new.pop(key, None) is None:
            self._sends.pop(key, None)
            self._ends.add(key)

    def discard(self) -> None:
        """Forget the batch's changes: its transaction did not commit."""
        self._new.clear()
        self._sends.clear()
        self._ends.clear()

    def flush(self, curs: Cursor[DictRow]) -> None:
        """Write the batch's changes; a batch relayed again writes the same rows once.

        Deletes go first: a wait that ended and resumed in one batch holds its attempt again.
        """
        if self._ends:
            curs.execute(
                "DELETE FROM relay_dispatches d USING unnest(" + _KEY_COLUMNS +
                ") AS u(job_id, stage, attempt) WHERE " + _MATCH, _columns(self._ends))
        if self._new:
            rows = list(self._new.values())
            curs.execute(
                "INSERT INTO relay_dispatches (job_id, stage, attempt, organization, priority,"
                " held_at, sent_at) SELECT * FROM unnest(" + _KEY_COLUMNS +
                ", %s::text[], %s::integer[], %s::timestamptz[], %s::timestamptz[])"
                " ON CONFLICT (job_id, stage, attempt) DO NOTHING",
                (*_columns(d.key for d, _ in rows), [d.organization for d, _ in rows],
                 [d.priority for d, _ in rows], [d.held_at for d, _ in rows],
                 [at for _, at in rows]))
        if self._sends:
            curs.execute(
                "UPDATE relay_dispatches d SET sent_at = u.at FROM unnest(" + _KEY_COLUMNS +
                ", %s::timestamptz[]) AS u(job_id, stage, attempt, at) WHERE " + _MATCH,
                (*_columns(self._sends), list(self._sends.values())))
        self.discard()

    # What the API shows --------------------------------------------------------

    @staticmethod
    def loads(curs: Cursor[Any] | Any) -> list[TenantLoad]:
        """Per organisation, attempts in flight and held (the table's view, not the relay's)."""
        rows = curs.execute(
            "SELECT organization, count(sent_at) AS running,"
            " count(*) - count(sent_at) AS held FROM relay_dispatches"
            " GROUP BY organization ORDER BY organization").fetchall()
        return [TenantLoad(r["organization"], r["running"], r["held"]) for r in rows]

    @staticmethod
    def held_stages(curs: Cursor[Any] | Any, job_id: UUID) -> list[str]:
        """The job's stages that are ready but held by its tenant's limit or the window."""
        rows = curs.execute(
            "SELECT stage FROM relay_dispatches WHERE job_id = %s AND sent_at IS NULL"
            " ORDER BY stage", (job_id,)).fetchall()
        return [r["stage"] for r in rows]


def _columns(keys: Iterable[Key]) -> tuple[list[UUID], list[str], list[int]]:
    listed = list(keys)
    return [k.job_id for k in listed], [k.stage for k in listed], [k.attempt for k in listed]
