"""The event store's sessions under a stalled writer: bounded waits, and recovery."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from conveyor.application import Jobs
from conveyor.settings import Settings
from conveyor.store import datastore_of
from conveyor.store.postgres import EventStoreBusyError
from tests.faults import effects_workflow

pytestmark = pytest.mark.integration


@pytest.fixture
def effects_jobs(settings: Settings) -> Iterator[Jobs]:
    app = Jobs(env=settings.eventsourcing_env(), workflows={"effects": effects_workflow.effects})
    yield app
    app.close()


def test_a_session_of_the_event_store_carries_the_bounds(effects_jobs: Jobs) -> None:
    with datastore_of(effects_jobs).get_connection() as conn:
        row = conn.execute(
            "SELECT current_setting('idle_in_transaction_session_timeout') AS idle,"
            " current_setting('lock_timeout') AS lock, current_setting('tcp_keepalives_idle')"
            " AS keepalives").fetchone()
    assert row == {"idle": "1s", "lock": "2s", "keepalives": "5"}


def test_an_insert_behind_a_lock_held_by_an_unbounded_session_fails_fast_as_busy(
    settings: Settings, effects_jobs: Jobs,
) -> None:
    # Given a session outside Conveyor's bounds holding the events table's lock
    assert settings.database_url
    with psycopg.connect(settings.database_url) as holder:
        holder.execute("LOCK TABLE jobs_events IN EXCLUSIVE MODE")

        # When a job is enqueued
        began = time.monotonic()
        with pytest.raises(EventStoreBusyError):
            effects_jobs.enqueue("effects", f"busy:{uuid.uuid4()}", {})

        # Then it is refused after one lock timeout, not after the library's ten retries
        assert time.monotonic() - began < 4.0
        holder.rollback()


def test_a_session_ended_for_idling_in_a_transaction_is_a_lost_connection_and_is_replaced(
    effects_jobs: Jobs,
) -> None:
    # Given a transaction of the event store's pool left idle past the 1 s bound
    datastore = datastore_of(effects_jobs)
    with pytest.raises(OperationalError), datastore.transaction(commit=True) as curs:
        curs.execute("SELECT 1")
        time.sleep(1.5)  # the stall itself; the server's clock decides
        # Then its next statement fails as a lost connection (retried, an outage to the
        # relay and projector), not as psycopg's InternalError
        curs.execute("SELECT 1")

    # When a job is enqueued next, Then it is recorded once, on a fresh session
    job_id = effects_jobs.enqueue("effects", f"idle:{uuid.uuid4()}", {}).job_id
    assert effects_jobs.repository.get(job_id).version == 1

