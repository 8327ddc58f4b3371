"""The `Jobs` application's recorder: eventsourcing's, plus stage leases released in its commit.

`Application.save(*aggregates, release=[leases])` hands its keyword arguments to the
recorder's `_insert_events(curs, ...)`, which runs inside the transaction that inserts
the events (the hook eventsourcing's process recorder writes its tracking record
through). Deleting the leases there saves a worker a commit per stage, and a lease
disappears exactly when its outcome is recorded, never before and never without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow

from conveyor.store.leases import Lease, LeaseStore
from conveyor.store.postgres import BoundedApplicationRecorder

# How `Jobs` names this class to eventsourcing's factory (`APPLICATION_RECORDER_TOPIC`).
TOPIC = f"{__name__}:JobsRecorder"


class JobsRecorder(BoundedApplicationRecorder):
    """Inserts events as the bounded recorder does, and deletes the `release=` leases in the
    same commit."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        if datastore.enable_db_functions:
            # That path inserts through a database function and drops `**kwargs`:
            # the leases would silently stay behind.
            raise ValueError("JobsRecorder needs POSTGRES_ENABLE_DB_FUNCTIONS off")
        super().__init__(datastore, **kwargs)
        self.leases = LeaseStore(datastore)

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        release: Sequence[Lease] = kwargs.get("release", ())
        if release:
            self.leases.release_in(curs, release)
        super()._insert_events(curs, stored_events, **kwargs)
