"""Migrating a version's jobs in flight onto the current one, on the real database: the command's
report, what it stores, what the relay then sends, and a renamed wait still resumed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import dramatiq
import falcon.testing
import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker

from conveyor.actors.broker import version_queue
from conveyor.actors.stages import Outcome, run_stage
from conveyor.aggregates import StageState, Status
from conveyor.application import Jobs
from conveyor.bootstrap import build_projector
from conveyor.http.api import create_app
from conveyor.migrating import migrate_version
from conveyor.relay.relay import Relay
from conveyor.settings import Settings
from conveyor.store import datastore_of
from conveyor.store.leases import Lease, LeaseStore
from conveyor.workflows import NoMigrationError, Pause, StageContext, Workflow

ADMIN = {"Authorization": "Bearer admin-token"}
WRITE = {"Authorization": "Bearer write-token"}


def analysed(ctx: StageContext) -> Any:
    if ctx.input.get("pause") and ctx.woken is None:
        return Pause("deploy.analysed", str(ctx.job_id), timeout=600)
    return {"stage": ctx.stage, "resumed_with": ctx.resumed_with}


def ran(ctx: StageContext) -> Any:
    return {"stage": ctx.stage}


def deploy(version: int, stages: dict[str, Any],
           migrations: dict[Any, dict[str, str]] | None = None) -> Workflow:
    workflow = Workflow("deploy", version=version, migrations=migrations)
    for name, handler in stages.items():
        workflow.stage(name)(handler)
    return workflow


V1 = deploy(1, {"fetch": ran, "analyse": analysed, "publish": ran})
V2 = deploy(2, {"fetch": ran, "analyse_code": analysed, "lint": ran, "publish": ran},
            migrations={1: {"analyse": "analyse_code"}})


class Deploy:
    """One database seen by version 1's code and by version 2's, and a relay of version 2's."""

    def __init__(self, settings: Settings, conn: psycopg.Connection[Any]) -> None:
        assert settings.database_url
        self.settings = settings
        self.conn = conn
        self.v1 = Jobs(env=settings.eventsourcing_env(), workflows={"deploy": V1})
        self.v2 = Jobs(env=settings.eventsourcing_env(), workflows={"deploy": V2})
        self.broker = StubBroker()
        for version in ("1", "2"):
            self.broker.declare_queue(version_queue(settings.queue_name, "deploy", version))
        self.relay = Relay(self.v2, self.broker, settings.queue_name, settings.database_url,
                           retention=timedelta(hours=1))

    def paused(self, key: str) -> UUID:
        """A v1 job whose fetch ran and whose analyse paused for its `deploy.analysed`."""
        job_id = self.v1.enqueue("deploy", key, {"pause": True}).job_id
        assert run_stage(self.v1, job_id, "fetch", 1) is Outcome.COMPLETED
        assert run_stage(self.v1, job_id, "analyse", 1) is Outcome.PAUSED
        return job_id

    def catch_up(self) -> None:
        """The read model and the relay both up to the end of the log."""
        with build_projector(self.settings, ("jobs",)).start() as runner:
            runner.wait(self.v1.recorder.max_notification_id(), timeout=20)
        while self.relay.relay_batch(self.conn):
            pass

    def sent(self, version: str) -> list[tuple[str, str, int]]:
        """The `run_stage` messages on a version's queue, taken off it."""
        queue = self.broker.queues[version_queue(self.settings.queue_name, "deploy", version)]
        messages = []
        while queue.qsize():
            messages.append(tuple(dramatiq.Message.decode(queue.get()).args[:3]))
        return messages  # type: ignore[return-value]

    def close(self) -> None:
        self.v1.close()
        self.v2.close()


@pytest.fixture
def env(settings: Settings) -> Iterator[Deploy]:
    assert settings.database_url
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        deployed = Deploy(settings, conn)
        yield deployed
        deployed.close()


def test_migrate_moves_each_job_in_flight_once_and_reports_what_it_could_not(
    env: Deploy,
) -> None:
    # Given v1 jobs: one paused at analyse, one not started, one cancelled after the read
    # model listed it, and one whose fetch a v1 worker is running now (its lease is live)
    paused = env.paused("paused")
    fresh = env.v1.enqueue("deploy", "fresh", {}).job_id
    finished = env.v1.enqueue("deploy", "finished", {}).job_id
    running = env.v1.enqueue("deploy", "running", {}).job_id
    env.catch_up()
    env.v1.cancel(finished, reason="gone", by="test")
    leases = LeaseStore(datastore_of(env.v1))
    now = env.v1.clock()
    assert leases.take(Lease(running, "fetch", 1), now, now + timedelta(minutes=5))

    # When the operator asks for a dry run, Then it lists what would move, storing nothing
    dry = migrate_version(env.v2, env.conn, "deploy", "1", dry_run=True)
    outcomes = {m.job_id: (m.outcome, m.reason) for m in dry.moved}
    assert outcomes == {paused: ("migrated", ""), fresh: ("migrated", ""),
                        finished: ("skipped", "deploy v1, CANCELLED"),
                        running: ("blocked", "stage 'fetch' is running")}
    assert {env.v2.get(j).workflow_version for j in (paused, fresh, running)} == {"1"}

    # When it migrates, Then the paused and the fresh job move onto v2, the others stay
    done = migrate_version(env.v2, env.conn, "deploy", "1")
    assert (done.to_version, dict(done.counts)) == ("2", {"migrated": 2, "skipped": 1,
                                                          "blocked": 1})
    moved = env.v2.get(paused)
    assert moved.workflow_version == "2"
    assert {s: str(r.state) for s, r in moved.runs.items()} == {
        "fetch": "done", "analyse_code": "waiting", "lint": "pending", "publish": "pending"}
    events = [type(e).__name__ for e in env.v2.repository.event_store.get(paused)]
    assert events[-1] == "Migrated" and events.count("Migrated") == 1
    assert env.v2.get(running).workflow_version == "1"

    # And the relay sends the fresh job's first stage again, to v2's queue, on a new attempt
    env.catch_up()
    assert env.sent("2") == [(str(fresh), "fetch", 2)]

    # When it runs again, Then nothing moves twice; the running job moves once its stage ends
    again = migrate_version(env.v2, env.conn, "deploy", "1")
    assert [(m.job_id, m.outcome) for m in again.moved] == [(running, "blocked")]
    assert env.v2.migrate(paused, "deploy", "1").outcome == "skipped"
    leases.release(Lease(running, "fetch", 1))
    last = migrate_version(env.v2, env.conn, "deploy", "1")
    assert [(m.job_id, m.outcome) for m in last.moved] == [(running, "migrated")]
    env.catch_up()
    assert migrate_version(env.v2, env.conn, "deploy", "1").moved == []


@pytest.mark.parametrize("event_first", [False, True],
                         ids=["event-after-migration", "event-relayed-before-migration"])
def test_a_renamed_paused_stage_resumes_on_its_event_and_the_job_finishes_on_v2s_graph(
    env: Deploy, event_first: bool,
) -> None:
    # Given a v1 job paused at analyse, migrated onto v2 (analyse renamed analyse_code)
    job_id = env.paused("paused")
    env.catch_up()
    if event_first:  # its event in the log before the migration, not yet relayed
        env.v2.record_outside_event("e-1", "deploy.analysed", str(job_id), {"ok": True}, "t")
    assert dict(migrate_version(env.v2, env.conn, "deploy", "1").counts) == {"migrated": 1}
    if not event_first:
        env.catch_up()
        # (its open wait follows the rename)
        assert env.conn.execute("SELECT stage FROM relay_waits WHERE job_id = %s",
                                (job_id,)).fetchall() == [("analyse_code",)]

        # When its outside event arrives
        env.v2.record_outside_event("e-1", "deploy.analysed", str(job_id), {"ok": True}, "t")
    env.catch_up()

    # Then the renamed stage resumes under its new name, on v2's queue, and v2's workers
    # finish the job through the added stage
    assert env.sent("1") == []
    for _ in range(3):
        for _, stage, attempt in env.sent("2"):
            assert run_stage(env.v2, job_id, stage, attempt) is Outcome.COMPLETED
        env.catch_up()
    job = env.v2.get(job_id)
    assert job.status is Status.COMPLETED
    assert job.outputs["analyse_code"] == {"stage": "analyse_code", "resumed_with": {"ok": True}}
    assert [(a.stage, str(a.outcome)) for a in job.attempt_log] == [
        ("fetch", "completed"), ("analyse", "paused"), ("analyse_code", "completed"),
        ("lint", "completed"), ("publish", "completed")]
    assert job.runs["lint"].state is StageState.DONE


def test_a_renamed_waits_deadline_set_before_the_migration_still_times_it_out(
    env: Deploy, settings: Settings,
) -> None:
    # Given a v1 job paused at analyse, its deadline timer set under that name, then migrated
    job_id = env.paused("paused")
    env.catch_up()
    migrate_version(env.v2, env.conn, "deploy", "1")
    env.catch_up()
    assert env.conn.execute("SELECT stage FROM relay_timers WHERE job_id = %s AND kind = 'wait'",
                            (job_id,)).fetchall() == [("analyse",)]

    # When the deadline passes
    later = Relay(env.v2, env.broker, settings.queue_name, str(settings.database_url),
                  clock=lambda: env.v2.clock() + timedelta(hours=1))
    assert later.fire_due_timers(env.conn) == 1

    # Then the renamed stage's wait timed out, as its policy says: the job failed there
    job = env.v2.get(job_id)
    assert (job.status, job.error) == (Status.FAILED, {
        "stage": "analyse_code", "classification": "PERMANENT", "error": "wait_timed_out"})


def test_a_v1_worker_finishing_a_stage_after_the_migration_is_refused(env: Deploy) -> None:
    # Given a v1 job whose fetch was sent to v1's queue, then migrated onto v2
    job_id = env.v1.enqueue("deploy", "late", {}).job_id
    env.catch_up()
    migrate_version(env.v2, env.conn, "deploy", "1")

    # When a v1 worker runs the old message, Then it does nothing: the attempt moved on
    assert run_stage(env.v1, job_id, "fetch", 1) is Outcome.SKIPPED
    assert env.v2.get(job_id).runs["fetch"].state is StageState.PENDING


class Raced(Jobs):
    """Version 2's command side, whose first read of a job is outdated by version 1's worker
    recording `fetch` before the migration is saved: a real conflict on the job's version."""

    name = Jobs.name  # the same event store

    def __init__(self, v1: Jobs, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.v1 = v1
        self.raced = False

    def get(self, job_id: UUID) -> Any:
        job = super().get(job_id)
        if not self.raced:
            self.raced = True
            assert run_stage(self.v1, job_id, "fetch", 1) is Outcome.COMPLETED
        return job


def test_a_stage_outcome_recorded_during_a_migration_conflicts_and_the_job_moves_after_it(
    env: Deploy, settings: Settings,
) -> None:
    # Given a v1 job whose fetch a v1 worker records while v2 migrates it
    job_id = env.v1.enqueue("deploy", "raced", {}).job_id
    raced = Raced(env.v1, env=settings.eventsourcing_env(), workflows={"deploy": V2})

    # When it is migrated
    try:
        moved = raced.migrate(job_id, "deploy", "1")
    finally:
        raced.close()

    # Then the migration's first save conflicted and it moved the job as fetch left it
    assert moved.outcome == "migrated"
    job = env.v2.get(job_id)
    assert [type(e).__name__ for e in env.v2.repository.event_store.get(job_id)] == [
        "Enqueued", "Started", "StageCompleted", "Migrated"]
    assert (job.workflow_version, job.runs["fetch"].state, job.ready_stages()) == (
        "2", StageState.DONE, ["analyse_code"])


def test_migrating_from_a_version_with_no_declared_migration_is_refused(env: Deploy) -> None:
    with pytest.raises(NoMigrationError, match="deploy declares no migration from v7"):
        migrate_version(env.v2, env.conn, "deploy", "7")


def test_the_api_migrates_for_an_admin_and_refuses_a_version_without_a_migration(
    env: Deploy, settings: Settings,
) -> None:
    # Given a v1 job paused at analyse
    job_id = env.paused("paused")
    env.catch_up()
    client = falcon.testing.TestClient(create_app(settings, lambda: env.v2,
                                                  amqp_check=lambda: None))
    path = "/workflow-queue/workflows/deploy/migrate"

    # Then only an admin may, with a well-formed body, from a version with a migration
    assert client.simulate_post(path, json={"from": "1"}, headers=WRITE).status_code == 403
    assert client.simulate_post(path, json={"from": True}, headers=ADMIN).status_code == 400
    refused = client.simulate_post(path, json={"from": "7"}, headers=ADMIN)
    assert (refused.status_code, refused.json["title"]) == (409, "No migration declared")
    unknown = client.simulate_post("/workflow-queue/workflows/nope/migrate", json={"from": "1"},
                                   headers=ADMIN)
    assert unknown.status_code == 404

    # When an admin asks for a dry run and then the migration, Then both report the job
    dry = client.simulate_post(path, json={"from": 1, "dry_run": True}, headers=ADMIN)
    assert (dry.status_code, dry.json["migrated"], dry.json["dry_run"]) == (200, 1, True)
    assert env.v2.get(job_id).workflow_version == "1"
    done = client.simulate_post(path, json={"from": "1"}, headers=ADMIN)
    assert done.status_code == 200
    assert done.json == {"workflow": "deploy", "from": "1", "to": "2", "dry_run": False,
                         "migrated": 1, "skipped": 0, "blocked": 0,
                         "jobs": [{"job_id": str(job_id), "outcome": "migrated",
                                   "reason": ""}]}
    assert env.v2.get(job_id).workflow_version == "2"
