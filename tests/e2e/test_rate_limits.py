"""A tenant's rate limit held by every worker process at once, measured from the history."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

from conveyor.bootstrap import build_jobs
from conveyor.settings import Settings
from tests.conftest import ROOT
from tests.e2e import rate_workflow
from tests.e2e.stack import running
from tests.e2e.test_tokens_and_tenants_cli import conveyor
from tests.waiting import wait_until

STAGES = 300
RATE = 10  # per second
WINDOW = timedelta(seconds=5)
TRIGGER = {"platform": "github", "repository": "a/api", "pull_request": "1",
           "head_commit": "sha", "base_branch": "main"}


def test_two_worker_processes_hold_a_tenants_rate_within_ten_percent_over_every_window(
    settings: Settings, tmp_path: Path,
) -> None:
    # Given organisation A may call github_api 10 times a second
    database = settings.require_database_url()
    set_ = conveyor(database, "tenants", "set", "A", "--rate", f"github_api={RATE}/s")
    assert set_.returncode == 0, set_.stderr
    # And 300 of its jobs, each one stage that uses github_api once, all ready at once
    jobs = build_jobs(settings, {rate_workflow.github_call.name: rate_workflow.github_call})
    try:
        for n in range(STAGES):
            jobs.enqueue("github_call", f"A-{n}", TRIGGER, organization="A")
    finally:
        jobs.close()

    # When two worker processes run them
    with running(settings, tmp_path, ("worker", "relay", "projector"),
                 PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                            if p),
                 CONVEYOR_WORKFLOW_MODULES="tests.e2e.rate_workflow",
                 CONVEYOR_WORKER_PROCESSES="2", CONVEYOR_WORKER_THREADS="4"):
        wait_until(lambda: completed(database) == STAGES, timeout=90, interval=0.5)
        wait_until(lambda: len(history(database, "Started")) == STAGES, timeout=30)

    # Then, from the history's Started times, every 5-second window after the first holds
    # the rate within 10 %
    started = sorted(datetime.fromisoformat(row[0]) for row in history(database, "Started"))
    first, last = started[0], started[-1]
    expected = RATE * WINDOW.total_seconds()
    windows = []
    begin = first + WINDOW
    while begin + WINDOW <= last:
        windows.append(sum(begin <= at < begin + WINDOW for at in started))
        begin += timedelta(seconds=0.5)
    assert len(windows) >= 30, (first, last)
    assert all(abs(n - expected) <= expected * 0.1 for n in windows), windows
    # And over the whole run it took as long as the rate says (the bucket's 10 at once)
    assert abs((last - first).total_seconds() - (STAGES - RATE) / RATE) < 2.0
    # And no attempt failed or was spent on a deferral: every stage ran once, as attempt 1
    assert {row[1] for row in history(database, "Started")} == {1}
    assert history(database, "StageFailed") == []
    assert len(history(database, "StageDeferred")) >= STAGES - 2 * RATE


def completed(database: str) -> int:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'COMPLETED'").fetchone()
    return int(row[0]) if row else 0


def history(database: str, event_type: str) -> list[tuple[str, int]]:
    with psycopg.connect(database) as conn:
        return [(r[0], int(r[1])) for r in conn.execute(
            "SELECT data->>'at', data->>'attempt' FROM job_events WHERE type = %s",
            (event_type,)).fetchall()]
