"""The `jobs` read model, kept by the projection runner on the real database."""

from __future__ import annotations

from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from conveyor.actors.stages import run_stage
from conveyor.application import Jobs
from conveyor.bootstrap import build_projector
from conveyor.settings import Settings

STAGES = ["validate", "fetch_changes", "review_pull_request", "review_files", "publish"]


def trigger(n: int) -> dict[str, str]:
    return {"platform": "github", "repository": "acme/api", "pull_request": str(n),
            "head_commit": f"sha{n}", "base_branch": "main"}


def rows(settings: Settings) -> dict[UUID, dict[str, object]]:
    assert settings.database_url
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        return {r["job_id"]: r for r in conn.execute("SELECT * FROM jobs")}


def catch_up(settings: Settings, jobs: Jobs) -> None:
    with build_projector(settings, ("jobs",)).start() as runner:
        runner.wait(jobs.recorder.max_notification_id(), timeout=20)


def test_the_projection_applies_each_event_once_across_a_restart(
    settings: Settings, jobs: Jobs
) -> None:
    # Given three finished jobs, projected
    done = [jobs.enqueue("code_review", f"k{n}", trigger(n)).job_id for n in range(3)]
    for job_id in done:
        for stage in STAGES:
            run_stage(jobs, job_id, stage, 1)
    catch_up(settings, jobs)
    before = rows(settings)

    # When more happens while the projector is down, and it starts again
    late = jobs.enqueue("code_review", "late", trigger(9)).job_id
    run_stage(jobs, late, "validate", 1)
    catch_up(settings, jobs)
    after = rows(settings)

    # Then every job's row reflects each of its events exactly once
    for job_id in done:
        assert after[job_id] == before[job_id]
        assert after[job_id]["status"] == "COMPLETED"
        assert [s["stage"] for s in after[job_id]["stages"]] == STAGES  # type: ignore[attr-defined]
        assert after[job_id]["version"] == jobs.get(job_id).version
    assert after[late]["status"] == "PROCESSING"
    assert after[late]["current_stages"] == ["fetch_changes"]
    assert after[late]["version"] == jobs.get(late).version == 3


def test_a_failed_and_a_cancelled_job_show_why(settings: Settings, jobs: Jobs) -> None:
    failed = jobs.enqueue("code_review", "f", {**trigger(1), "head_commit": ""}).job_id
    run_stage(jobs, failed, "validate", 1)
    cancelled = jobs.enqueue("code_review", "c", trigger(2)).job_id
    jobs.cancel(cancelled, reason="superseded", by="tester")

    catch_up(settings, jobs)
    projected = rows(settings)

    assert projected[failed]["status"] == "FAILED"
    assert projected[failed]["error"]["classification"] == "PERMANENT"  # type: ignore[index]
    assert projected[cancelled]["status"] == "CANCELLED"
    assert projected[cancelled]["current_stages"] == []
