"""Workflow versions on the real database: what `conveyor workflows` reports, and a worker that
never runs a job of a version it lacks."""

from __future__ import annotations

import psycopg

from conveyor.actors.stages import run_stage
from conveyor.aggregates.job import Job
from conveyor.aggregates.stages import StageState
from conveyor.application import Jobs
from conveyor.attempts import Outcome
from conveyor.bootstrap import build_projector
from conveyor.settings import Settings
from conveyor.store.workers import WorkerStore
from conveyor.versions import workflow_versions
from conveyor.workflows import WORKFLOWS

TRIGGER = {"platform": "github", "repository": "acme/api", "pull_request": "1",
           "head_commit": "sha1", "base_branch": "main"}


def catch_up(settings: Settings, jobs: Jobs) -> None:
    with build_projector(settings, ("jobs",)).start() as runner:
        runner.wait(jobs.recorder.max_notification_id(), timeout=20)


def test_workflows_counts_each_versions_jobs_in_flight_and_says_which_drained(
    settings: Settings, jobs: Jobs
) -> None:
    # Given two jobs in flight on the current code_review, one on an old version "1" and one
    # finished on "1", with a worker of each version advertising
    current = WORKFLOWS["code_review"].version
    jobs.enqueue("code_review", "new-a", TRIGGER)
    jobs.enqueue("code_review", "new-b", TRIGGER)
    plan = WORKFLOWS["code_review"].plan()
    old = Job(key="old-a", workflow="code_review", plan=plan, trigger=TRIGGER,
              workflow_version="1")
    jobs.save(old)
    catch_up(settings, jobs)
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        WorkerStore(conn).advertise("w-new", {"code_review": current})
        WorkerStore(conn).advertise("w-old", {"code_review": "1"})

        # When the versions are listed, Then the old one is still draining
        states = {s.version: s for s in workflow_versions(conn, WORKFLOWS)}
        assert (states[current].in_flight, states[current].workers,
                states[current].current) == (2, 1, True)
        assert (states["1"].in_flight, states["1"].workers, states["1"].drained) == (1, 1, False)

        # When the old job is cancelled, Then version 1 has drained while its worker runs
        jobs.cancel(old.id, reason="test", by="test")
        catch_up(settings, jobs)
        states = {s.version: s for s in workflow_versions(conn, WORKFLOWS)}
        assert (states["1"].in_flight, states["1"].workers, states["1"].drained) == (0, 1, True)

        # When its worker stops, Then version 1 is no longer listed
        WorkerStore(conn).withdraw("w-old")
        assert "1" not in {s.version for s in workflow_versions(conn, WORKFLOWS)}


def test_a_worker_forwards_a_job_of_a_version_it_lacks_and_runs_nothing(jobs: Jobs) -> None:
    # Given a job enqueued on code_review version "1", which this worker's code is not
    plan = WORKFLOWS["code_review"].plan()
    job = Job(key="old", workflow="code_review", plan=plan, trigger=TRIGGER,
              workflow_version="1")
    jobs.save(job)
    forwarded: list[tuple[str, str]] = []

    # When its first stage reaches this worker
    outcome = run_stage(jobs, job.id, plan[0]["stage"], 1,
                        forward=lambda workflow, version: forwarded.append((workflow, version)))

    # Then it is forwarded to version 1's queue and the job is untouched
    assert outcome is Outcome.FORWARDED
    assert forwarded == [("code_review", "1")]
    loaded = jobs.get(job.id)
    assert loaded.version == 1
    assert loaded.runs[plan[0]["stage"]].state is StageState.PENDING
