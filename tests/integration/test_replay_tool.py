"""`conveyor replay`: verify, rebuild under concurrent writes, a job as it was, bulk retry."""

from __future__ import annotations

import threading

from conveyor.application import Jobs
from conveyor.bootstrap import build_projector
from conveyor.replay import bulk_retry, rebuild, show_job, verify
from conveyor.settings import Settings
from tests.integration.projections_support import (
    complete_next,
    fail_next,
    project,
    trigger,
    varied_history,
)


def test_verify_finds_no_difference_after_retries_pauses_cancels_and_recoveries(
    settings: Settings, jobs: Jobs
) -> None:
    varied_history(jobs, n=18)
    project(settings)
    lines: list[str] = []

    assert verify(settings, ["jobs", "job_history", "metrics"], out=lines.append) == []
    assert all("matches the log" in line for line in lines)


def test_verify_reports_the_projection_and_the_row_that_the_log_does_not_explain(
    settings: Settings, jobs: Jobs
) -> None:
    import psycopg

    # Given projected jobs, one of whose live rows was changed behind the log's back
    tampered, *others = varied_history(jobs, n=3)
    project(settings)
    with psycopg.connect(str(settings.database_url)) as conn:
        status = conn.execute("SELECT status FROM jobs WHERE job_id = %s", (tampered,)
                              ).fetchone()
        conn.execute("UPDATE jobs SET status = 'CANCELLED' WHERE job_id = %s", (tampered,))
    assert status is not None and status[0] != "CANCELLED"
    lines: list[str] = []

    # When the jobs projection is verified
    differences = verify(settings, ["jobs"], out=lines.append)

    # Then it reports the jobs projection as differing, and exactly that job's row: the
    # tampered one only in the live table, the one the log explains only in the rebuild
    assert lines[0] == "jobs: differs"
    assert len(differences) == 2, differences
    live, rebuilt = sorted(differences)
    assert live.startswith("jobs: only in live: ") and "'CANCELLED'" in live
    assert rebuilt.startswith("jobs: only in rebuilt: ") and f"'{status[0]}'" in rebuilt
    assert all(str(tampered) in line for line in differences)
    assert not any(str(job_id) in line for line in differences for job_id in others)
    assert lines[1:] == differences


def test_a_rebuild_under_concurrent_writes_ends_equal_to_the_live_model(
    settings: Settings, jobs: Jobs
) -> None:
    varied_history(jobs, n=12)
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            job_id = jobs.enqueue("code_review", f"during-{n}", trigger(n)).job_id
            complete_next(jobs, job_id)
            n += 1

    with build_projector(settings) as live:
        writer = threading.Thread(target=write)
        writer.start()
        try:
            counts = rebuild(settings, ["jobs", "job_history", "metrics"], out=lambda _: None)
        finally:
            stop.set()
            writer.join()
        live.wait(jobs.recorder.max_notification_id(), timeout=30)

    assert counts["jobs"] > 0
    assert verify(settings, ["jobs", "job_history", "metrics"], out=lambda _: None) == []


def test_a_job_is_shown_event_by_event_up_to_a_version(settings: Settings, jobs: Jobs) -> None:
    job_id = jobs.enqueue("code_review", "shown", trigger(1)).job_id
    complete_next(jobs, job_id)
    lines: list[str] = []

    assert show_job(settings, job_id, version=2, at=None, out=lines.append) == 0

    assert lines[0].startswith("v1 ") and "Enqueued" in lines[0]
    assert "PENDING" in lines[1]
    assert lines[2].startswith("v2 ") and "Started" in lines[2]
    assert len(lines) == 4


def test_bulk_retry_retries_failed_jobs_and_a_dry_run_changes_nothing(
    settings: Settings, jobs: Jobs
) -> None:
    failed = [jobs.enqueue("code_review", f"f{i}", trigger(i)).job_id for i in range(3)]
    for job_id in failed:
        fail_next(jobs, job_id, retry=False)
    jobs.enqueue("code_review", "ok", trigger(9))
    project(settings)

    assert set(bulk_retry(settings, "FAILED", None, None, dry_run=True,
                          out=lambda _: None)) == set(failed)
    assert all(jobs.get(j).status == "FAILED" for j in failed)
    assert set(bulk_retry(settings, "FAILED", None, "code_review", dry_run=False,
                          out=lambda _: None)) == set(failed)
    assert all(jobs.get(j).status == "PROCESSING" for j in failed)


def test_a_rebuild_keeps_text_with_tabs_newlines_backslashes_and_quotes_exactly(
    settings: Settings, jobs: Jobs
) -> None:
    from datetime import timedelta

    from conveyor.aggregates import Classification, Job
    from tests.integration.projections_support import now, start

    odd = 'tab\there, line\nbreak, back\\slash, "quoted", {braces}, \\N, caf\u00e9'
    job_id = jobs.enqueue("code_review", odd, {**trigger(1), "repository": odd},
                          correlation_id=odd).job_id
    stage, attempt = start(jobs, job_id)

    def fail(job: Job) -> None:
        job.start_stage(stage, attempt, at=now())
        job.fail_stage(stage, attempt, Classification.PERMANENT, odd,
                       at=now() + timedelta(milliseconds=3))

    jobs.update(job_id, fail)
    project(settings)
    lines: list[str] = []

    assert verify(settings, ["jobs", "job_history", "metrics"], out=lines.append) == [], lines
    rebuild(settings, ["jobs", "job_history", "metrics"], out=lambda _: None)
    assert verify(settings, ["jobs", "job_history", "metrics"], out=lambda _: None) == []


def test_a_rebuild_swaps_in_tables_with_the_live_indexes_and_their_names(
    settings: Settings, jobs: Jobs
) -> None:
    import psycopg

    varied_history(jobs, n=4)
    project(settings)
    query = ("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
             " AND tablename IN ('jobs', 'job_events', 'job_stage_attempts', 'metrics_status',"
             " 'metrics_durations', 'jobs_tracking') ORDER BY indexname")
    with psycopg.connect(str(settings.database_url)) as conn:
        before = conn.execute(query).fetchall()

    rebuild(settings, ["jobs", "job_history", "metrics"], out=lambda _: None)

    with psycopg.connect(str(settings.database_url)) as conn:
        after = conn.execute(query).fetchall()
        leftovers = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE"
                                 " '%%__rebuild'").fetchone()
    assert after == before
    assert leftovers == (0,)
