"""Schedules fired by real relay processes: exactly once per tick, and catch-up after a kill."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from conveyor.aggregates import Status, job_id_for
from conveyor.bootstrap import build_jobs
from conveyor.schedules import schedule, tick_key
from conveyor.settings import Settings
from conveyor.store.schedules import ScheduleStore
from tests.conftest import ROOT
from tests.e2e.stack import CONVEYOR, conveyor, free_port, process_env, running
from tests.waiting import wait_until


def connect(settings: Settings) -> Any:
    assert settings.database_url
    url = settings.database_url
    return lambda: psycopg.connect(url, autocommit=True, row_factory=dict_row)


@contextmanager
def relays(settings: Settings, logs: Path, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` relay processes side by side, knowing the tests' `tick` workflow."""
    env = process_env(settings, free_port(), free_port(),
                      PYTHONPATH=os.pathsep.join(
                          p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
                      CONVEYOR_WORKFLOW_MODULES="tests.e2e.schedule_workflow")
    started: list[subprocess.Popen[bytes]] = []

    def start(n: int) -> subprocess.Popen[bytes]:
        with (logs / f"relay-{n}.log").open("ab") as log:
            return subprocess.Popen([CONVEYOR, "relay"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=log)

    started.extend(start(n) for n in range(count))
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            process.wait(timeout=30)


def next_minute(margin: float) -> datetime:
    """The next whole minute at least `margin` seconds away."""
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return start if (start - now).total_seconds() >= margin else start + timedelta(minutes=1)


def within(minute: datetime, seconds: str) -> str:
    """A cron expression ticking at `seconds` (croniter's 6th field) of that one minute."""
    return f"{minute.minute} {minute.hour} {minute.day} {minute.month} * {seconds}"


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def fired(settings: Settings, name: str, ticks: list[datetime]) -> list[datetime]:
    ids = {job_id_for(tick_key(name, t)): t for t in ticks}
    with connect(settings)() as conn:
        rows = conn.execute("SELECT originator_id FROM jobs_events WHERE originator_version = 1"
                            " AND originator_id = ANY(%s)", (list(ids),)).fetchall()
    return sorted(ids[row["originator_id"]] for row in rows)


def jobs_started(settings: Settings) -> int:
    with connect(settings)() as conn:
        row = conn.execute("SELECT count(*) AS n FROM jobs_events"
                           " WHERE originator_version = 1").fetchone()
    assert row is not None
    return int(row["n"])


def test_two_relays_over_sixty_ticks_of_a_per_second_schedule_start_sixty_jobs(
    settings: Settings, tmp_path: Path
) -> None:
    minute = next_minute(margin=5)
    store = ScheduleStore(connect(settings))
    store.create(schedule("every_second", cron=within(minute, "*"), workflow="tick",
                          catch_up="all", overlap="allow"), datetime.now(UTC))
    ticks = [minute + timedelta(seconds=s) for s in range(60)]

    with relays(settings, tmp_path, 2) as group:
        # Halfway, the active relay is killed and the one standing by takes over.
        sleep_until(minute + timedelta(seconds=30))
        active = [n for n in range(2)
                  if '"relay active"' in (tmp_path / f"relay-{n}.log").read_text()]
        assert len(active) == 1
        group[active[0]].send_signal(signal.SIGKILL)
        group[active[0]].wait()
        sleep_until(minute + timedelta(seconds=61))
        wait_until(lambda: store.get("every_second").last_tick >= ticks[-1], timeout=30)

    assert fired(settings, "every_second", ticks) == ticks
    assert jobs_started(settings) == 60


def test_a_relay_killed_across_ten_ticks_fires_them_per_each_catch_up_policy(
    settings: Settings, tmp_path: Path
) -> None:
    minute = next_minute(margin=5)
    store = ScheduleStore(connect(settings))
    for policy in ("skip", "latest", "all"):
        store.create(schedule(policy, cron=within(minute, "0-14"), workflow="tick",
                              catch_up=policy, overlap="allow"), datetime.now(UTC))
    before = [minute + timedelta(seconds=s) for s in range(5)]
    missed = [minute + timedelta(seconds=s) for s in range(5, 15)]

    with relays(settings, tmp_path, 1) as group:
        sleep_until(before[-1])
        wait_until(lambda: all(store.get(p).last_tick >= before[-1]
                               for p in ("skip", "latest", "all")), timeout=30)
        group[0].send_signal(signal.SIGKILL)
        group[0].wait()
        killed_at = datetime.now(UTC)
    assert killed_at < missed[0], "the relay was killed too late for the test to mean much"

    sleep_until(missed[-1] + timedelta(seconds=3))  # every missed tick is now late
    with relays(settings, tmp_path, 1):
        wait_until(lambda: all(store.get(p).last_tick >= missed[-1]
                               for p in ("skip", "latest", "all")), timeout=30)

    for policy in ("skip", "latest", "all"):
        assert fired(settings, policy, before) == before
    assert fired(settings, "skip", missed) == []
    assert fired(settings, "latest", missed) == missed[-1:]
    assert fired(settings, "all", missed) == missed


def test_the_cli_lists_pauses_resumes_and_triggers_a_schedule(settings: Settings) -> None:
    assert settings.database_url
    store = ScheduleStore(connect(settings))
    store.create(schedule("nightly", cron="0 3 * * *", workflow="code_review",
                          timezone="Europe/Paris"), datetime.now(UTC))

    paused = conveyor(settings.database_url, "schedules", "pause", "nightly")
    listed_paused = conveyor(settings.database_url, "schedules", "list")
    resumed = conveyor(settings.database_url, "schedules", "resume", "nightly")
    triggered = conveyor(settings.database_url, "schedules", "trigger", "nightly")
    missing = conveyor(settings.database_url, "schedules", "trigger", "nope")
    listed = conveyor(settings.database_url, "schedules", "list")

    assert (paused.returncode, resumed.returncode, triggered.returncode) == (0, 0, 0)
    assert "nightly" in listed_paused.stdout and " paused " in listed_paused.stdout
    assert store.get("nightly").last_job_id == UUID(triggered.stdout.strip())
    assert missing.returncode == 3 and "No schedule named 'nope'" in missing.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("nightly"))
    assert row.split()[:8] == ["nightly", "0", "3", "*", "*", "*", "Europe/Paris", "code_review"]
    next_fire = store.get("nightly").schedule.next_tick(datetime.now(UTC))
    assert next_fire.isoformat(timespec="seconds") in row  # 03:00 in Paris, in UTC
    assert " paused " not in row


def test_overlap_policies_with_a_workflow_slower_than_the_schedule(
    settings: Settings, tmp_path: Path
) -> None:
    minute = next_minute(margin=5)
    store = ScheduleStore(connect(settings))
    for policy in ("skip", "allow", "cancel"):
        store.create(schedule(policy, cron=within(minute, "0-7"), workflow="slow",
                              overlap=policy), datetime.now(UTC))
    ticks = [minute + timedelta(seconds=s) for s in range(8)]
    jobs = build_jobs(dataclasses.replace(settings, workflow_modules=(
        "tests.e2e.schedule_workflow",)))

    def runs(policy: str) -> list[Any]:
        return [jobs.get(job_id_for(tick_key(policy, t))) for t in fired(settings, policy, ticks)]

    try:
        with running(settings, tmp_path, ("worker", "relay"), CONVEYOR_WORKER_THREADS="16",
                     PYTHONPATH=os.pathsep.join(
                         p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
                     CONVEYOR_WORKFLOW_MODULES="tests.e2e.schedule_workflow"):
            sleep_until(ticks[-1])
            wait_until(lambda: all(r.status.is_terminal for p in ("skip", "allow", "cancel")
                                   for r in runs(p)), timeout=60)

        skipped, allowed, cancelled = runs("skip"), runs("allow"), runs("cancel")
    finally:
        jobs.close()

    # skip: a tick while a run goes fires nothing, so runs follow one another.
    assert 2 <= len(skipped) < len(ticks)
    assert {r.status for r in skipped} == {Status.COMPLETED}
    for before, after in itertools.pairwise(skipped):
        assert before.finished_at is not None and after.created_on >= before.finished_at
    # allow: every tick runs, beside the runs still going.
    assert len(allowed) == len(ticks)
    assert {r.status for r in allowed} == {Status.COMPLETED}
    assert allowed[1].started_at is not None and allowed[0].finished_at is not None
    assert allowed[1].started_at < allowed[0].finished_at
    # cancel: every tick runs, cancelling the run before it; the last one completes.
    assert len(cancelled) == len(ticks)
    assert [r.status for r in cancelled] == [Status.CANCELLED] * 7 + [Status.COMPLETED]
