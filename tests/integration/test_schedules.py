"""Schedules fired by the scheduler on the real PostgreSQL, with an injected clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import falcon.testing
import pytest

from conveyor.aggregates import Status, job_id_for
from conveyor.application import JobNotFoundError, Jobs
from conveyor.bootstrap import load_schedules, load_workflows
from conveyor.http.api import create_app
from conveyor.scheduler import Scheduler
from conveyor.schedules import ScheduleExistsError, ScheduleNotFoundError, schedule, tick_key
from conveyor.settings import Settings
from conveyor.store import datastore_of
from conveyor.store.schedules import ScheduleStore
from tests.e2e.schedule_workflow import tick

READ = {"Authorization": "Bearer read-token"}
WRITE = {"Authorization": "Bearer write-token"}
REVIEW = {"platform": "github", "repository": "acme/api", "pull_request": "7",
          "head_commit": "abc123"}
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def scheduler(settings: Settings, clock: Clock) -> Iterator[Scheduler]:
    jobs = Jobs(settings.eventsourcing_env(), workflows={**load_workflows(settings), "tick": tick},
                clock=clock)
    yield Scheduler(jobs, ScheduleStore(datastore_of(jobs).get_connection),
                    grace=timedelta(seconds=2))
    jobs.close()


def minute(n: int) -> datetime:
    return START + timedelta(minutes=n)


def fired(scheduler: Scheduler, name: str, minutes: range) -> list[int]:
    """The minutes among `minutes` whose tick started a job."""
    found = []
    for n in minutes:
        try:
            scheduler.jobs.get(job_id_for(tick_key(name, minute(n))))
            found.append(n)
        except JobNotFoundError:
            pass
    return found


def test_each_tick_starts_one_job_however_often_it_is_fired(
    scheduler: Scheduler, clock: Clock
) -> None:
    scheduler.store.create(schedule("m", cron="* * * * *", workflow="tick", input={"a": 1},
                                    overlap="allow"), clock.now)

    clock.now = minute(1) + timedelta(seconds=1)
    assert scheduler.fire_due() == 1
    assert scheduler.fire_due() == 0
    # A second relay, or one restarted before it moved the cursor, fires the same tick.
    state = scheduler.store.get("m")
    with scheduler.store.connect() as conn:
        conn.execute("UPDATE schedules SET last_tick = %s", (START,))
    assert scheduler.fire_due() == 0

    job = scheduler.jobs.get(job_id_for(tick_key("m", minute(1))))
    assert (job.workflow, job.trigger) == ("tick", {"a": 1})
    assert state.last_job_id == job.id


@pytest.mark.parametrize(("catch_up", "window", "fired_minutes"), [
    ("skip", None, []),
    ("latest", None, [10]),
    ("all", None, list(range(1, 11))),
    ("all", timedelta(minutes=4), [7, 8, 9, 10]),
])
def test_ticks_missed_while_no_relay_ran_fire_per_the_catch_up_policy(
    scheduler: Scheduler, clock: Clock, catch_up: str, window: timedelta | None,
    fired_minutes: list[int],
) -> None:
    scheduler.store.create(schedule("m", cron="* * * * *", workflow="tick", catch_up=catch_up,
                                    window=window, overlap="allow"), clock.now)

    clock.now = minute(10) + timedelta(seconds=30)
    scheduler.fire_due()
    clock.now = minute(11) + timedelta(seconds=1)
    scheduler.fire_due()

    assert fired(scheduler, "m", range(1, 11)) == fired_minutes
    assert fired(scheduler, "m", range(11, 12)) == [11]  # and on time again after


def test_overlap_skip_fires_nothing_while_the_previous_run_goes(
    scheduler: Scheduler, clock: Clock
) -> None:
    scheduler.store.create(schedule("m", cron="* * * * *", workflow="tick", overlap="skip"),
                           clock.now)
    clock.now = minute(1)
    scheduler.fire_due()  # no worker runs: the job stays PENDING, a slow run

    clock.now = minute(2)
    scheduler.fire_due()
    first = job_id_for(tick_key("m", minute(1)))
    scheduler.jobs.cancel(first, reason="done with it", by="test")
    clock.now = minute(3)
    scheduler.fire_due()

    assert fired(scheduler, "m", range(1, 4)) == [1, 3]


def test_overlap_allow_fires_every_tick_beside_the_running_one(
    scheduler: Scheduler, clock: Clock
) -> None:
    scheduler.store.create(schedule("m", cron="* * * * *", workflow="tick", overlap="allow"),
                           clock.now)
    for n in (1, 2, 3):
        clock.now = minute(n)
        scheduler.fire_due()

    assert fired(scheduler, "m", range(1, 4)) == [1, 2, 3]
    assert {scheduler.jobs.get(job_id_for(tick_key("m", minute(n)))).status
            for n in (1, 2, 3)} == {Status.PENDING}


def test_overlap_cancel_cancels_the_previous_run_and_starts_the_tick(
    scheduler: Scheduler, clock: Clock
) -> None:
    scheduler.store.create(schedule("m", cron="* * * * *", workflow="tick", overlap="cancel"),
                           clock.now)
    for n in (1, 2):
        clock.now = minute(n)
        scheduler.fire_due()

    previous = scheduler.jobs.get(job_id_for(tick_key("m", minute(1))))
    current = scheduler.jobs.get(job_id_for(tick_key("m", minute(2))))
    assert previous.status is Status.CANCELLED
    assert previous.cancel_reason is not None and "overlapped" in previous.cancel_reason
    assert current.status is Status.PENDING


def test_a_paused_schedule_fires_nothing_and_resumes_from_now(
    scheduler: Scheduler, clock: Clock
) -> None:
    scheduler.store.create(schedule("m", cron="* * * * *", workflow="tick", catch_up="all",
                                    overlap="allow"), clock.now)
    scheduler.pause("m")
    clock.now = minute(5) + timedelta(seconds=30)
    scheduler.fire_due()
    scheduler.resume("m")
    clock.now = minute(6)
    scheduler.fire_due()

    assert fired(scheduler, "m", range(1, 7)) == [6]


def test_a_trigger_starts_a_run_now_and_is_the_last_run(
    scheduler: Scheduler, clock: Clock
) -> None:
    scheduler.store.create(schedule("m", cron="0 0 1 1 *", workflow="tick", input={"b": 2}),
                           clock.now)

    started = scheduler.trigger("m", by="ops")

    assert scheduler.jobs.get(started.job_id).trigger == {"b": 2}
    assert scheduler.get("m").last_job_id == started.job_id
    with pytest.raises(ScheduleNotFoundError):
        scheduler.trigger("nope", by="ops")


def test_a_second_schedule_of_the_same_name_is_refused(scheduler: Scheduler, clock: Clock) -> None:
    scheduler.store.create(schedule("m", cron="* * * * *", workflow="tick"), clock.now)

    with pytest.raises(ScheduleExistsError):
        scheduler.store.create(schedule("m", cron="*/5 * * * *", workflow="tick"), clock.now)
    assert scheduler.get("m").schedule.cron == "* * * * *"


def test_a_schedule_naming_no_deployed_workflow_fires_nothing_and_others_still_fire(
    scheduler: Scheduler, clock: Clock
) -> None:
    scheduler.store.create(schedule("gone", cron="* * * * *", workflow="removed"), clock.now)
    scheduler.store.create(schedule("m", cron="* * * * *", workflow="tick"), clock.now)
    clock.now = minute(1)

    assert scheduler.fire_due() == 1
    assert fired(scheduler, "m", range(1, 2)) == [1]


def test_the_api_creates_lists_pauses_resumes_and_triggers_a_schedule(
    settings: Settings, jobs: Jobs
) -> None:
    client = falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=lambda: None))
    body = {"name": "nightly", "cron": "0 3 * * *", "workflow": "code_review",
            "timezone": "Europe/Paris", "input": REVIEW}

    created = client.simulate_post("/workflow-queue/schedules", json=body, headers=WRITE)
    again = client.simulate_post("/workflow-queue/schedules", json=body, headers=WRITE)
    bad_input = client.simulate_post("/workflow-queue/schedules", headers=WRITE,
                                     json={**body, "name": "other", "input": {"platform": 1}})
    bad = client.simulate_post("/workflow-queue/schedules", headers=WRITE,
                               json={**body, "name": "other", "cron": "every night"})
    read_only = client.simulate_post("/workflow-queue/schedules/nightly/pause", headers=READ)
    paused = client.simulate_post("/workflow-queue/schedules/nightly/pause", headers=WRITE)
    resumed = client.simulate_post("/workflow-queue/schedules/nightly/resume", headers=WRITE)
    triggered = client.simulate_post("/workflow-queue/schedules/nightly/trigger", headers=WRITE)
    missing = client.simulate_post("/workflow-queue/schedules/nope/trigger", headers=WRITE)
    listed = client.simulate_get("/workflow-queue/schedules", headers=READ).json["schedules"]

    assert created.status_code == 201 and created.json["next_fire_at"] is not None
    assert (again.status_code, bad.status_code, bad_input.status_code) == (409, 400, 400)
    assert missing.status_code == 404
    assert read_only.status_code == 403
    assert paused.json["paused"] is True and paused.json["next_fire_at"] is None
    assert resumed.json["paused"] is False
    assert triggered.status_code == 202
    assert [(s["name"], s["last_job_id"]) for s in listed] == [
        ("nightly", triggered.json["job_id"])]
    assert jobs.get(UUID(triggered.json["job_id"])).trigger == REVIEW


def test_a_schedule_declared_in_a_registered_module_is_stored_and_fires_with_its_function(
    settings: Settings, scheduler: Scheduler, clock: Clock
) -> None:
    modules = dataclasses.replace(settings,
                                  workflow_modules=("tests.integration.declared_schedules",))
    declared = Scheduler(scheduler.jobs, scheduler.store, load_schedules(modules))

    declared.declare()
    clock.now = datetime(2026, 3, 3, 5, 0, 1, tzinfo=UTC)  # 06:00 in Paris
    declared.fire_due()

    job = scheduler.jobs.get(job_id_for(tick_key("daily_digest", clock.now.replace(second=0))))
    assert job.trigger == {"day": "2026-03-03"}
    assert declared.get("daily_digest").declared


def test_a_schedule_whose_code_is_gone_fires_nothing(
    settings: Settings, scheduler: Scheduler, clock: Clock
) -> None:
    modules = dataclasses.replace(settings,
                                  workflow_modules=("tests.integration.declared_schedules",))
    Scheduler(scheduler.jobs, scheduler.store, load_schedules(modules)).declare()

    scheduler.declare()  # a relay whose code no longer declares it
    clock.now = datetime(2026, 3, 3, 5, 0, 1, tzinfo=UTC)

    assert scheduler.fire_due() == 0


def test_a_failing_input_function_passes_its_tick_and_the_next_fires(
    scheduler: Scheduler, clock: Clock
) -> None:
    calls: list[datetime] = []

    @schedule("flaky", cron="* * * * *", workflow="tick", overlap="allow")
    def flaky(tick: datetime) -> dict[str, str]:
        calls.append(tick)
        if len(calls) == 1:
            raise RuntimeError("the team's bug")
        return {"at": tick.isoformat()}

    declared = Scheduler(scheduler.jobs, scheduler.store, {"flaky": flaky})
    declared.declare()
    for n in (1, 2):
        clock.now = minute(n)
        declared.fire_due()

    assert fired(scheduler, "flaky", range(1, 3)) == [2]
    assert scheduler.store.get("flaky").last_tick == minute(2)
