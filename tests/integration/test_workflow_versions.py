"""Workflow versions on the real database: what `conveyor workflows` reports, and a worker that
never runs a job of a version it lacks."""

from __future__ import annotations

import dramatiq
import falcon.testing
import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker

from conveyor.actors.stages import run_stage
from conveyor.aggregates.job import Job
from conveyor.aggregates.stages import StageState
from conveyor.application import Jobs
from conveyor.attempts import Outcome
from conveyor.bootstrap import build_projector, build_worker_broker, served_versions
from conveyor.http.api import create_app
from conveyor.relay.relay import Relay
from conveyor.settings import Settings
from conveyor.store.workers import WorkerStore
from conveyor.versions import workflow_versions
from conveyor.workflows import WORKFLOWS
from tests.waiting import wait_until

READ = {"Authorization": "Bearer read-token"}
ADMIN = {"Authorization": "Bearer admin-token"}
TRIGGER = {"platform": "github", "repository": "acme/api", "pull_request": "1",
           "head_commit": "sha1", "base_branch": "main"}


def catch_up(settings: Settings, jobs: Jobs) -> None:
    with build_projector(settings, ("jobs",)).start() as runner:
        runner.wait(jobs.recorder.max_notification_id(), timeout=20)


def test_workflows_counts_each_versions_jobs_in_flight_and_says_which_drained(
    settings: Settings, jobs: Jobs
) -> None:
    # Given two jobs in flight on the current code_review, one on an old version "1", one
    # enqueued before versions, with a worker of each version advertising
    current = WORKFLOWS["code_review"].version
    jobs.enqueue("code_review", "new-a", TRIGGER)
    jobs.enqueue("code_review", "new-b", TRIGGER)
    plan = WORKFLOWS["code_review"].plan()
    old = Job(key="old-a", workflow="code_review", plan=plan, trigger=TRIGGER,
              workflow_version="1")
    jobs.save(old)
    jobs.save(Job(key="before-versions", workflow="code_review", plan=plan, trigger=TRIGGER))
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
        # (a job enqueued before versions is run by any worker with code_review: both)
        assert (states[None].in_flight, states[None].workers, states[None].state) == (
            1, 2, "draining")

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


def test_a_job_enqueued_before_versions_goes_to_the_unversioned_queue_and_runs_there(
    settings: Settings, jobs: Jobs
) -> None:
    # Given a job enqueued before versions (no workflow_version) whose plan skipped a stage
    plan = WORKFLOWS["code_review"].plan(frozenset({"review_files"}))
    old = Job(key="before-versions", workflow="code_review", plan=plan, trigger=TRIGGER)
    jobs.save(old)
    broker = StubBroker()
    broker.declare_queue(settings.queue_name)
    relay = Relay(jobs, broker, settings.queue_name, str(settings.database_url))

    # When the relay sends its first stage
    dispatches, _ = relay.decide(next(iter(jobs.repository.event_store.get(old.id))))
    relay.send(dispatches)

    # Then it goes to the unversioned queue every worker consumes, not to a version's
    (sent,) = [dramatiq.Message.decode(m) for m in broker.queues[settings.queue_name].queue]
    assert sent.args[:2] == (str(old.id), plan[0]["stage"])
    assert {name for name, queue in broker.queues.items() if queue.qsize()} == {
        settings.queue_name}

    # And a worker with code_review runs it, whatever version its code is
    outcome = run_stage(jobs, old.id, plan[0]["stage"], 1,
                        forward=lambda workflow, version: pytest.fail("forwarded"))
    assert outcome is not Outcome.FORWARDED
    assert jobs.get(old.id).runs[plan[0]["stage"]].state is not StageState.PENDING


def test_the_api_shows_a_job_waiting_for_a_version_no_worker_runs_and_lists_the_versions(
    settings: Settings, jobs: Jobs
) -> None:
    # Given a job on code_review "1", one on the current version, one before versions, and
    # a worker of the current version alone
    current = WORKFLOWS["code_review"].version
    plan = WORKFLOWS["code_review"].plan()
    old = Job(key="old", workflow="code_review", plan=plan, trigger=TRIGGER, workflow_version="1")
    jobs.save(old)
    new_id = jobs.enqueue("code_review", "new", TRIGGER).job_id
    unversioned = Job(key="unversioned", workflow="code_review", plan=plan, trigger=TRIGGER)
    jobs.save(unversioned)
    catch_up(settings, jobs)
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        WorkerStore(conn).advertise("w-new", {"code_review": current})
    client = falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=lambda: None))

    # When the jobs are read, Then only the old one waits, for its version
    def waits(job_id: object) -> list[dict[str, object]]:
        shown = client.simulate_get(f"/workflow-queue/jobs/{job_id}", headers=READ)
        assert shown.status_code == 200
        assert [w for w in shown.json["waiting_for"] if w["kind"] != "version"] == []
        return [w for w in shown.json["waiting_for"] if w["kind"] == "version"]

    assert waits(old.id) == [{"kind": "version", "workflow": "code_review", "version": "1"}]
    assert waits(new_id) == waits(unversioned.id) == []
    listed = client.simulate_get("/workflow-queue/jobs", headers=READ).json["jobs"]
    assert {job["job_id"]: (job["workflow_version"], job["waiting_for"]) for job in listed} == {
        str(old.id): ("1", [{"kind": "version", "workflow": "code_review", "version": "1"}]),
        str(new_id): (current, []), str(unversioned.id): (None, [])}

    # And when a worker of version 1 comes, the old job waits for nothing
    with psycopg.connect(settings.database_url) as conn:
        WorkerStore(conn).advertise("w-old", {"code_review": "1"})
    assert waits(old.id) == []

    # And the versions are listed as `conveyor workflows` prints them, to an admin alone
    assert client.simulate_get("/workflow-queue/workflows", headers=READ).status_code == 403
    answer = client.simulate_get("/workflow-queue/workflows", headers=ADMIN)
    assert answer.status_code == 200
    assert {state.pop("version"): state for state in answer.json["workflows"]} == {
        None: {"workflow": "code_review", "in_flight": 1, "workers": 2, "current": False,
               "drained": False, "state": "draining"},
        "1": {"workflow": "code_review", "in_flight": 1, "workers": 1, "current": False,
              "drained": False, "state": "draining"},
        current: {"workflow": "code_review", "in_flight": 1, "workers": 1, "current": True,
                  "drained": False, "state": "current"},
    }


def test_a_worker_advertises_its_versions_while_it_runs_and_withdraws_them_when_it_stops(
    settings: Settings, jobs: Jobs
) -> None:
    # Given a worker (`conveyor dev`'s in-process one: the same middleware as `conveyor worker`)
    broker = build_worker_broker(settings, lambda: jobs, WORKFLOWS, in_process=True)
    worker = dramatiq.Worker(broker, worker_threads=1)
    expected = {(name, version): 1 for name, version in served_versions(WORKFLOWS).items()}
    assert settings.database_url
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        # When it runs, Then it advertises each workflow's version
        worker.start()
        try:
            wait_until(lambda: WorkerStore(conn).served() == expected, timeout=10)
        finally:
            # And when it stops, it withdraws them
            worker.stop()
        assert WorkerStore(conn).served() == {}
