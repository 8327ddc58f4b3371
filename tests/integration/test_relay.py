"""The relay and the actor on the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import dramatiq
import psycopg
import pytest

from conveyor.aggregates import Status
from conveyor.application import Jobs
from conveyor.bootstrap import build_jobs, build_worker_broker
from conveyor.relay.relay import Relay
from conveyor.settings import Settings
from tests.waiting import in_plan_order, wait_until

STAGES = ["validate", "fetch_changes", "review_pull_request", "review_files", "publish"]
STEPS = [["validate"], ["fetch_changes"], ["review_pull_request", "review_files"], ["publish"]]


def trigger(n: int) -> dict[str, str]:
    return {"platform": "github", "repository": "acme/api", "pull_request": str(n),
            "head_commit": f"sha{n}", "base_branch": "main"}


@dataclass
class System:
    jobs: Jobs
    broker: dramatiq.Broker
    settings: Settings

    def relay(self) -> Relay:
        assert self.settings.database_url
        return Relay(self.jobs, self.broker, self.settings.queue_name, self.settings.database_url,
                     poll_seconds=0.1)

    def completions(self, job_id: object) -> list[str]:
        return [e.stage for e in self.jobs.repository.event_store.get(job_id)
                if type(e).__name__ == "StageCompleted"]


@pytest.fixture
def system(settings: Settings) -> Iterator[System]:
    jobs = build_jobs(settings)
    broker = build_worker_broker(settings, lambda: jobs)
    yield System(jobs, broker, settings)
    broker.close()
    jobs.close()


@pytest.fixture
def worker(system: System) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(system.broker,
                             worker_threads=2, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop()


def run_in_thread(relay: Relay) -> threading.Thread:
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    wait_until(relay.is_active.is_set, timeout=10)
    return thread


def test_relayed_jobs_run_every_stage_in_order_and_complete(
    system: System, worker: dramatiq.Worker
) -> None:
    job_ids = [system.jobs.enqueue("code_review", f"k{n}", trigger(n)).job_id for n in range(5)]
    relay = system.relay()
    thread = run_in_thread(relay)

    wait_until(lambda: all(system.jobs.get(j).status is Status.COMPLETED for j in job_ids))
    relay.stop()
    thread.join(5)

    for job_id in job_ids:
        assert in_plan_order(system.completions(job_id), STEPS)
    assert relay.sent == 5 * len(STAGES)


def test_a_relay_restarted_before_recording_its_position_sends_again_and_no_stage_runs_twice(
    system: System,
) -> None:
    # Given a relay that sent the first stage but crashed before recording its position
    job_id = system.jobs.enqueue("code_review", "k", trigger(1)).job_id
    crashed = system.relay()
    for notification in system.jobs.recorder.select_notifications(start=None, limit=10):
        dispatches, _ = crashed.decide(system.jobs.mapper.to_domain_event(notification))
        crashed.send(dispatches)
    assert crashed.sent == 1

    # When a new relay starts from the recorded position
    restarted = system.relay()
    thread = run_in_thread(restarted)
    # (and relays the Enqueued before a worker records the first copy's outcome, which
    # would leave it nothing to send for that stage)
    wait_until(lambda: restarted.sent == 1)
    worker = dramatiq.Worker(system.broker,
                             worker_threads=2, worker_timeout=100)
    worker.start()

    # Then the stage is sent again, yet recorded once, and the job completes
    wait_until(lambda: system.jobs.get(job_id).status is Status.COMPLETED)
    restarted.stop()
    thread.join(5)
    worker.stop()
    assert restarted.sent == len(STAGES)
    assert in_plan_order(system.completions(job_id), STEPS)


def test_a_standby_relay_takes_over_when_the_active_one_stops(system: System) -> None:
    active, standby = system.relay(), system.relay()
    active_thread = run_in_thread(active)
    standby_thread = threading.Thread(target=standby.run, daemon=True)
    standby_thread.start()

    assert not standby.is_active.wait(0.5)  # bounded wait: proves it stays standby meanwhile
    active.stop()
    active_thread.join(5)

    assert standby.is_active.wait(5)
    standby.stop()
    standby_thread.join(5)


def test_a_retry_due_time_is_kept_in_postgresql_and_fired_when_due(system: System) -> None:
    # Given a stage failure whose retry is due in the past (relay's clock is the database's)
    from datetime import UTC, datetime, timedelta

    job_id = system.jobs.enqueue("code_review", "k", trigger(1)).job_id
    now = datetime.now(UTC)

    def fail(job: object) -> None:
        from conveyor.aggregates import Classification, Job

        assert isinstance(job, Job)
        job.start_stage("validate", 1, at=now)
        job.fail_stage("validate", 1, Classification.RETRYABLE, "boom", at=now,
                       retry_at=now + timedelta(hours=1))

    system.jobs.update(job_id, fail)
    relay = system.relay()
    assert system.settings.database_url
    with psycopg.connect(system.settings.database_url, autocommit=True) as conn:
        relay.relay_batch(conn)
        # When the timer is not yet due nothing is sent; once due, attempt 2 is sent once.
        assert relay.fire_due_timers(conn) == 0
        conn.execute("UPDATE relay_timers SET due_at = now() - interval '1 second'")
        assert relay.fire_due_timers(conn) == 1
        assert relay.fire_due_timers(conn) == 0
    # validate #2 from the timer; #1's outcome was in the same batch as its Enqueued,
    # so fair dispatch never sent it (docs/architecture.md §3.7)
    assert relay.sent == 1
    assert system.jobs.get(job_id).expects("validate", 2)


def test_a_relayed_batch_moves_the_position_the_tracking_recorder_reads(system: System) -> None:
    # Given two jobs in the log, and a relay that has relayed nothing yet
    for n in range(2):
        system.jobs.enqueue("code_review", f"k{n}", trigger(n))
    relay = system.relay()
    assert relay.position() == 0
    assert system.settings.database_url
    with psycopg.connect(system.settings.database_url, autocommit=True) as conn:
        # When it relays a batch
        assert relay.relay_batch(conn) == 2

        # Then eventsourcing's recorder reads the log's last notification as the position,
        # so the next batch starts after it and finds nothing
        last = system.jobs.recorder.max_notification_id()
        assert relay.tracking.max_tracking_id("Jobs") == last
        assert relay.relay_batch(conn) == 0
    assert relay.sent == 2
