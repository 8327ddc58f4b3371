"""`relay_tracking`: the relay's position in the log, kept by eventsourcing's own recorder.

Migration 0003 created the table in the shape `PostgresTrackingRecorder` uses for
single-row tracking (one row per application name, and the `__migration__` row that
tells the recorder the table needs no migration), so the recorder is used as it is:
`max_tracking_id` reads the position, and `_insert_tracking(curs, tracking)` writes it
in the relay's batch transaction, refusing a position that does not move forward.
"""

from __future__ import annotations

from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder

TABLE = "relay_tracking"


def relay_tracking(datastore: PostgresDatastore) -> PostgresTrackingRecorder:
    """The recorder of the relay's position; the table is created by the migrations."""
    return PostgresTrackingRecorder(datastore, tracking_table_name=TABLE)
