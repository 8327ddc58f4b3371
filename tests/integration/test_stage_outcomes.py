"""Stage outcomes on the real event store: saved together, each with its lease released."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from conveyor.actors import stages
from conveyor.actors.stages import run_stage
from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.attempts import Outcome, Returned
from conveyor.bootstrap import build_jobs
from conveyor.settings import Settings
from conveyor.store import datastore_of
from conveyor.store.leases import Lease, LeaseStore, hold_presence

TRIGGER = {"platform": "github", "repository": "acme/api", "pull_request": "42",
           "head_commit": "abc123", "base_branch": "main"}


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    assert settings.database_url
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def gathering_jobs(settings: Settings) -> Iterator[Jobs]:
    """Jobs whose outcomes wait for each other until four are in (or a long while)."""
    app = build_jobs(settings)
    app.outcomes.window, app.outcomes.limit = 30.0, 4
    yield app
    app.close()


def leases(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT job_id, stage, attempt FROM stage_leases").fetchall()


def take_lease(jobs: Jobs, job_id: UUID, stage: str = "validate") -> None:
    now = jobs.clock()
    LeaseStore(datastore_of(jobs)).take(Lease(job_id, stage, 1), now, now + timedelta(minutes=5))


def record_together(jobs: Jobs, runs: list[tuple[UUID, Job]]) -> list[Outcome]:
    """Record `validate`'s outcome for each (job, copy read before) from threads at once."""
    barrier = Barrier(len(runs))

    def record(run: tuple[UUID, Job]) -> Outcome:
        job_id, loaded = run
        barrier.wait()
        return jobs.record_stage_outcome(job_id, "validate", 1, jobs.clock(),
                                         Returned({"ok": True}), loaded=loaded)

    with ThreadPoolExecutor(len(runs)) as pool:
        return list(pool.map(record, runs))


def test_an_outcome_releases_its_lease_in_its_own_save_and_a_refused_save_keeps_it(
    jobs: Jobs, conn: psycopg.Connection[Any],
) -> None:
    # Given a job whose first stage is leased, and two copies of the job
    job_id = jobs.enqueue("code_review", "k", TRIGGER).job_id
    take_lease(jobs, job_id)
    first, stale = jobs.get(job_id), jobs.get(job_id)
    first.start_stage("validate", 1, at=jobs.clock())
    stale.start_stage("validate", 1, at=jobs.clock())
    jobs.save(first, release=[Lease(job_id, "validate", 1)])
    assert leases(conn) == []
    take_lease(jobs, job_id)

    # When the stale copy is saved with the lease to release
    with pytest.raises(IntegrityError):
        jobs.save(stale, release=[Lease(job_id, "validate", 1)])

    # Then the refused save released nothing
    assert leases(conn) == [(job_id, "validate", 1)]


def test_a_stage_run_leaves_no_lease_behind_whether_recorded_or_discarded(
    jobs: Jobs, conn: psycopg.Connection[Any],
) -> None:
    # Given a job whose stage runs to completion, and one cancelled while its stage ran
    done = jobs.enqueue("code_review", "done", TRIGGER).job_id
    refused = jobs.enqueue("code_review", "refused", TRIGGER).job_id
    take_lease(jobs, refused)
    loaded = jobs.get(refused)
    jobs.cancel(refused, reason="test", by="tester")

    # When both outcomes are recorded
    assert run_stage(jobs, done, "validate", 1) is Outcome.COMPLETED
    assert record_together(jobs, [(refused, loaded)]) == [Outcome.DISCARDED]

    # Then neither lease is left for the relay to recover
    assert leases(conn) == []


def test_outcomes_recorded_at_once_are_one_transaction(
    gathering_jobs: Jobs, conn: psycopg.Connection[Any],
) -> None:
    # Given four jobs whose first stage is leased and has run
    jobs = gathering_jobs
    job_ids = [jobs.enqueue("code_review", f"k{i}", TRIGGER).job_id for i in range(4)]
    for job_id in job_ids:
        take_lease(jobs, job_id)

    # When the four outcomes are recorded from four threads at once
    outcomes = record_together(jobs, [(job_id, jobs.get(job_id)) for job_id in job_ids])

    # Then each is completed, all eight events and the leases' release committed together
    assert outcomes == [Outcome.COMPLETED] * 4
    transactions = conn.execute(
        "SELECT count(DISTINCT xmin::text), count(*) FROM jobs_events"
        " WHERE originator_id = ANY(%s) AND originator_version > 1", (job_ids,)).fetchone()
    assert transactions == (1, 8)
    assert leases(conn) == []


def test_a_conflict_in_a_shared_save_loses_no_other_outcome(
    gathering_jobs: Jobs, conn: psycopg.Connection[Any],
) -> None:
    # Given two jobs read before their stage ran, one since cancelled, and two racing
    # copies of a third job's stage
    jobs = gathering_jobs
    fresh, cancelled, raced = (jobs.enqueue("code_review", k, TRIGGER).job_id
                               for k in ("fresh", "cancelled", "raced"))
    for job_id in (fresh, cancelled, raced):
        take_lease(jobs, job_id)
    stale = jobs.get(cancelled)
    jobs.cancel(cancelled, reason="test", by="tester")
    raced_copy = jobs.get(raced)

    # When the four outcomes are recorded in one gathering
    outcomes = record_together(jobs, [(fresh, jobs.get(fresh)), (cancelled, stale),
                                      (raced, raced_copy), (raced, copy.deepcopy(raced_copy))])

    # Then each caller learns its own outcome: the raced stage is recorded once
    assert outcomes[:2] == [Outcome.COMPLETED, Outcome.DISCARDED]
    assert sorted(outcomes[2:]) == sorted([Outcome.COMPLETED, Outcome.DISCARDED])
    names = {job_id: [type(e).__name__ for e in jobs.repository.event_store.get(job_id)]
             for job_id in (fresh, cancelled, raced)}
    assert names == {fresh: ["Enqueued", "Started", "StageCompleted"],
                     cancelled: ["Enqueued", "Cancelled"],
                     raced: ["Enqueued", "Started", "StageCompleted"]}
    assert leases(conn) == []


def test_a_second_copy_of_a_running_attempt_does_nothing_unless_rabbitmq_redelivered_it(
    jobs: Jobs, conn: psycopg.Connection[Any],
) -> None:
    # Given a job whose first stage a worker is running (its lease is live)
    job_id = jobs.enqueue("code_review", "dup", TRIGGER).job_id
    take_lease(jobs, job_id)

    # When another copy of the same attempt arrives (a relay sending its in-flight again)
    outcome = run_stage(jobs, job_id, "validate", 1)

    # Then it is acknowledged and does nothing: no event, the first worker's lease stays
    assert outcome is Outcome.SKIPPED
    assert jobs.get(job_id).version == 1
    assert leases(conn) == [(job_id, "validate", 1)]

    # When RabbitMQ redelivers it (the worker it went to first is gone)
    again = run_stage(jobs, job_id, "validate", 1, redelivered=True)

    # Then it takes the lease over and runs the attempt
    assert again is Outcome.COMPLETED
    assert [type(e).__name__ for e in jobs.repository.event_store.get(job_id)][1:] == [
        "Started", "StageCompleted"]
    assert leases(conn) == []


def test_a_redelivered_copy_never_takes_over_the_lease_of_a_worker_still_present(
    jobs: Jobs, conn: psycopg.Connection[Any], settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a job whose first stage this process is running, its presence held (as a
    # worker's heartbeat session holds it)
    monkeypatch.setattr(stages, "TAKEOVER_PATIENCE_SECONDS", 0.3)
    job_id = jobs.enqueue("code_review", "present", TRIGGER).job_id
    take_lease(jobs, job_id)
    assert settings.database_url
    with psycopg.connect(settings.database_url, autocommit=True) as presence:
        assert hold_presence(presence)

        # When RabbitMQ redelivers a copy of the attempt (after a broker restart: the
        # worker is alive and still running it)
        outcome = run_stage(jobs, job_id, "validate", 1, redelivered=True)

        # Then the copy is acknowledged and does nothing; the running worker's lease stays
        assert outcome is Outcome.SKIPPED
        assert jobs.get(job_id).version == 1
        assert leases(conn) == [(job_id, "validate", 1)]

    # When the worker's process is gone (its presence's session ended) and it comes again
    again = run_stage(jobs, job_id, "validate", 1, redelivered=True)

    # Then it takes the lease over and runs the attempt
    assert again is Outcome.COMPLETED
    assert leases(conn) == []


def counted(jobs: Jobs, monkeypatch: pytest.MonkeyPatch, stage: str) -> list[int]:
    """A list that grows by one each time `stage`'s handler runs."""
    runs: list[int] = []
    workflow = jobs.workflows["code_review"]
    handler = workflow[stage].handler

    def counting(ctx: Any) -> Any:
        runs.append(ctx.attempt)
        return handler(ctx)

    monkeypatch.setitem(workflow._stages, stage, dataclasses.replace(workflow[stage],
                                                                      handler=counting))
    return runs


def reading_first(jobs: Jobs, monkeypatch: pytest.MonkeyPatch, stale: Job) -> None:
    """`jobs.get` answers `stale` once, as a worker that read the job a moment ago, then
    reads the store again."""
    answers = [stale]
    get = jobs.get
    monkeypatch.setattr(jobs, "get", lambda job_id: answers.pop() if answers else get(job_id))


def test_a_copy_read_before_another_copys_outcome_was_saved_does_not_run_again(
    jobs: Jobs, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two copies of one attempt (a relay re-sending after an outage), the second
    # read the job while the first was still running
    job_id = jobs.enqueue("code_review", "stale", TRIGGER).job_id
    runs = counted(jobs, monkeypatch, "validate")
    stale = jobs.get(job_id)
    assert run_stage(jobs, job_id, "validate", 1) is Outcome.COMPLETED
    assert leases(conn) == []  # the first copy's save released its lease

    # When the second copy takes the lease after that save
    reading_first(jobs, monkeypatch, stale)
    outcome = run_stage(jobs, job_id, "validate", 1)

    # Then it finds the job moved on, reads it again and does nothing: the handler ran once
    assert outcome is Outcome.SKIPPED
    assert runs == [1]
    assert leases(conn) == []
    assert [type(e).__name__ for e in jobs.repository.event_store.get(job_id)][1:] == [
        "Started", "StageCompleted"]


def test_a_stage_read_before_a_parallel_stage_was_saved_still_runs(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a job with two stages ready at once, and a worker that read it before the
    # other stage's outcome was saved
    job_id = jobs.enqueue("code_review", "parallel", TRIGGER).job_id
    while len(jobs.get(job_id).ready_stages()) < 2:
        assert run_stage(jobs, job_id, jobs.get(job_id).ready_stages()[0], 1) in (
            Outcome.COMPLETED, Outcome.PAUSED)
    first, second = jobs.get(job_id).ready_stages()[:2]
    stale = jobs.get(job_id)
    assert run_stage(jobs, job_id, first, 1) is Outcome.COMPLETED
    runs = counted(jobs, monkeypatch, second)

    # When it takes the lease on the job as it read it
    reading_first(jobs, monkeypatch, stale)
    outcome = run_stage(jobs, job_id, second, 1)

    # Then the moved job is read again and the stage runs, once
    assert outcome is Outcome.COMPLETED
    assert runs == [1]
