"""The `Jobs` application's recorder: a save is one statement, which also releases stage leases.

eventsourcing's recorder inserts events in a pipelined transaction (`BEGIN`, `LOCK`,
`INSERT`, `Sync`, then `COMMIT` a round trip later), holding the events table's lock
across round trips to the client. Here one call of `conveyor_append_events` (migration
0045), in autocommit, does the same work: the lock is held only for the server's own
work and its flush, a worker thread that waits for the GIL between two statements no
longer keeps every other writer waiting, and a process frozen mid-save cannot hold the
lock (the server has the whole message before it takes it, and commits at its end).

`Application.save(*aggregates, release=[leases])` hands its keyword arguments here:
deleting the leases in the same statement saves a worker a commit per stage, and a
lease disappears exactly when its outcome is recorded, never before and never without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore

from conveyor.store.leases import Lease, lease_columns
from conveyor.store.postgres import BoundedApplicationRecorder

# How `Jobs` names this class to eventsourcing's factory (`APPLICATION_RECORDER_TOPIC`).
TOPIC = f"{__name__}:JobsRecorder"

APPEND = (
    "SELECT id FROM conveyor_append_events(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[],"
    " %s::uuid[], %s::text[], %s::integer[]) AS id"
)


class JobsRecorder(BoundedApplicationRecorder):
    """Inserts events, and deletes the `release=` leases, in one statement."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        if datastore.enable_db_functions:
            # That path inserts through the library's own function and drops `**kwargs`.
            raise ValueError("JobsRecorder needs POSTGRES_ENABLE_DB_FUNCTIONS off")
        super().__init__(datastore, **kwargs)
        if self.events_table_name != "jobs_events":
            raise ValueError("JobsRecorder appends to jobs_events (migration 0045) only")

    def _insert_once(self, stored_events: Sequence[StoredEvent],
                     **kwargs: Any) -> Sequence[int]:
        release: Sequence[Lease] = kwargs.get("release", ())
        params = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
            *lease_columns(release),
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(APPEND, params, prepare=True)
            return [row["id"] for row in curs.fetchall()]
