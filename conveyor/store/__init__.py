"""The relay's and workers' own tables, each behind one module with typed methods.

The event store belongs to eventsourcing; every other table Conveyor writes outside
the read models has exactly one owner here, the way procrastinate keeps its queries
behind a manager:

- `leases`: `stage_leases`, a worker's claim on a stage attempt;
- `timers`: `relay_timers`, retry due times and wait deadlines;
- `waits`: `relay_waits` and `relay_outside_events`, the wait matcher's state;
- `tracking`: `relay_tracking`, the relay's position, kept by eventsourcing's recorder;
- `tokens`: `api_tokens`, the API's tokens as SHA-256 hashes;
- `tenants`: `tenant_settings`, each organisation's limits, priority and rates;
- `rates`: `rate_buckets`, each organisation's token bucket per rate-limited resource;
- `dispatches`: `relay_dispatches`, the stage attempts fair dispatch holds or has in flight.

`recorder` is the `Jobs` application's event recorder, which releases leases in the
transaction that saves their outcomes.

Methods that take a cursor run in the caller's transaction (the relay writes a batch's
waits, timers and position in one); the others commit on their own.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application
from eventsourcing.postgres import PostgresDatastore, PostgresRecorder


def datastore_of(app: Application[Any]) -> PostgresDatastore:
    """The PostgreSQL datastore the application's recorder writes through."""
    recorder = app.recorder
    if not isinstance(recorder, PostgresRecorder):
        raise TypeError(f"{app.name} is not persisted in PostgreSQL: {type(recorder).__name__}")
    return recorder.datastore
