"""Helpers shared by the read-side tests: make job histories and project them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from conveyor.aggregates import Classification, Job
from conveyor.application import Jobs
from conveyor.bootstrap import build_projector
from conveyor.settings import Settings


def trigger(n: int, platform: str = "github", repository: str = "acme/api") -> dict[str, str]:
    return {"platform": platform, "repository": repository, "pull_request": str(n),
            "head_commit": f"sha{n}", "base_branch": "main"}


def project(settings: Settings) -> int:
    """Bring every projection up to the head of the log; return the head."""
    runner = build_projector(settings, batch_size=500)
    try:
        head = runner.app.recorder.max_notification_id() or 0
        runner.run_until(head)
    finally:
        runner.app.close()
    return head


def now() -> datetime:
    return datetime.now(UTC)


def start(jobs: Jobs, job_id: UUID) -> tuple[str, int]:
    job = jobs.get(job_id)
    stage = job.ready_stages()[0]
    return stage, job.runs[stage].attempt


def complete_next(jobs: Jobs, job_id: UUID) -> None:
    stage, attempt = start(jobs, job_id)

    def run(job: Job) -> None:
        job.start_stage(stage, attempt, at=now())
        job.complete_stage(stage, attempt, {"ok": True}, at=now() + timedelta(milliseconds=5))

    jobs.update(job_id, run)


def fail_next(jobs: Jobs, job_id: UUID, *, retry: bool) -> None:
    stage, attempt = start(jobs, job_id)

    def run(job: Job) -> None:
        job.start_stage(stage, attempt, at=now())
        job.fail_stage(stage, attempt, Classification.RETRYABLE if retry
                       else Classification.PERMANENT, "boom", at=now(),
                       retry_at=now() + timedelta(seconds=1) if retry else None)

    jobs.update(job_id, run)


def retry_stage_now(jobs: Jobs, job_id: UUID) -> None:
    """Run the stage whose retry is scheduled, and complete it."""
    def run(job: Job) -> None:
        stage = next(s for s, run in job.runs.items() if run.retry_at is not None)
        attempt = job.runs[stage].attempt
        job.start_stage(stage, attempt, at=now())
        job.complete_stage(stage, attempt, None, at=now())

    jobs.update(job_id, run)


def pause_and_resume(jobs: Jobs, job_id: UUID, *, time_out: bool = False) -> None:
    stage, attempt = start(jobs, job_id)

    def pause(job: Job) -> None:
        job.start_stage(stage, attempt, at=now())
        job.pause(stage, attempt, "ast.task.completed", f"t-{job_id}",
                  deadline=now() + timedelta(hours=1), at=now())

    jobs.update(job_id, pause)
    if time_out:
        jobs.update(job_id, lambda job: job.time_out_wait(stage, fail_job=False, at=now()))
    else:
        jobs.update(job_id, lambda job: job.resume(stage, "evt-1", {"done": True}))


def recover_next(jobs: Jobs, job_id: UUID) -> None:
    stage, attempt = start(jobs, job_id)
    jobs.update(job_id, lambda job: job.recover(stage, attempt, at=now()))


def varied_history(jobs: Jobs, n: int = 12) -> list[UUID]:
    """Jobs that completed, retried, paused, timed out, recovered, failed, retried, cancelled."""
    # Of two organisations (with and without a team) and of none, as before tenants.
    tenants = [("acme", "platform"), ("globex", None), (None, None)]
    ids = [jobs.enqueue("code_review", f"varied-{i}", trigger(i),
                        organization=tenants[i % 3][0], team=tenants[i % 3][1]).job_id
           for i in range(n)]
    for i, job_id in enumerate(ids):
        kind = i % 6
        if kind == 0:
            for _ in range(3):
                complete_next(jobs, job_id)
        elif kind == 1:
            fail_next(jobs, job_id, retry=True)
            retry_stage_now(jobs, job_id)
        elif kind == 2:
            complete_next(jobs, job_id)
            pause_and_resume(jobs, job_id, time_out=i % 4 == 0)
        elif kind == 3:
            recover_next(jobs, job_id)
            complete_next(jobs, job_id)
        elif kind == 4:
            fail_next(jobs, job_id, retry=False)
            jobs.retry(job_id, by="tester")
        else:
            complete_next(jobs, job_id)
            jobs.cancel(job_id, reason="superseded", by="tester")
    return ids
