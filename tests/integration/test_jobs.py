"""The command side on the real event store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from conveyor.actors.stages import Outcome, run_stage
from conveyor.aggregates import Job, Status
from conveyor.application import Jobs

STAGES = ["validate", "fetch_changes", "review_pull_request", "review_files", "publish"]
TRIGGER = {"platform": "github", "repository": "acme/api", "pull_request": "42",
           "head_commit": "abc123", "base_branch": "main"}


def event_names(jobs: Jobs, job: Job) -> list[str]:
    return [type(e).__name__ for e in jobs.repository.event_store.get(job.id)]


def test_enqueueing_the_same_key_twice_gives_one_job(jobs: Jobs) -> None:
    first = jobs.enqueue("code_review", "github:acme/api:42:abc123", TRIGGER)
    second = jobs.enqueue("code_review", "github:acme/api:42:abc123", TRIGGER)

    assert first.created and not second.created
    assert first.job_id == second.job_id
    assert event_names(jobs, jobs.get(first.job_id)) == ["Enqueued"]


def test_ten_concurrent_enqueues_of_one_key_create_exactly_one_job(jobs: Jobs) -> None:
    barrier = Barrier(10)

    def enqueue(_: int) -> tuple[str, bool]:
        barrier.wait()
        result = jobs.enqueue("code_review", "github:acme/api:42:race", TRIGGER)
        return str(result.job_id), result.created

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(enqueue, range(10)))

    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_running_every_stage_completes_the_job_and_repeats_change_nothing(jobs: Jobs) -> None:
    job_id = jobs.enqueue("code_review", "k", TRIGGER).job_id

    for stage in STAGES:
        assert run_stage(jobs, job_id, stage, 1) is Outcome.COMPLETED
        assert run_stage(jobs, job_id, stage, 1) is Outcome.SKIPPED

    job = jobs.get(job_id)
    assert job.status is Status.COMPLETED
    # N + 1 saves for N stages: each stage's start and finish are one save.
    assert event_names(jobs, job) == ["Enqueued"] + ["Started", "StageCompleted"] * 5 + [
        "Completed"
    ]


def test_racing_copies_of_one_stage_message_record_one_outcome(jobs: Jobs) -> None:
    job_id = jobs.enqueue("code_review", "k", TRIGGER).job_id
    barrier = Barrier(8)

    def run(_: int) -> Outcome:
        barrier.wait()
        return run_stage(jobs, job_id, "validate", 1)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(run, range(8)))

    assert outcomes.count(Outcome.COMPLETED) == 1
    assert set(outcomes) <= {Outcome.COMPLETED, Outcome.SKIPPED, Outcome.DISCARDED}
    assert event_names(jobs, jobs.get(job_id)).count("StageCompleted") == 1


def test_a_cancelled_job_discards_the_outcome_of_its_running_stage(jobs: Jobs) -> None:
    job_id = jobs.enqueue("code_review", "k", TRIGGER).job_id
    jobs.cancel(job_id, reason="test", by="tester")

    assert run_stage(jobs, job_id, "validate", 1) is Outcome.SKIPPED
    assert event_names(jobs, jobs.get(job_id)) == ["Enqueued", "Cancelled"]


def test_a_trigger_without_a_head_commit_fails_the_job_permanently_at_once(jobs: Jobs) -> None:
    job_id = jobs.enqueue("code_review", "k", {**TRIGGER, "head_commit": None}).job_id

    assert run_stage(jobs, job_id, "validate", 1) is Outcome.FAILED

    job = jobs.get(job_id)
    assert job.status is Status.FAILED
    assert job.error is not None and job.error["classification"] == "PERMANENT"
