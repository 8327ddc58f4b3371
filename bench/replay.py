"""Rebuild the read models from a log of 200,000+ events, beside the bare log read rate.

    .venv/bin/python -m bench.replay [--jobs 25000]
"""

from __future__ import annotations

import argparse
import io
import time
from datetime import UTC, datetime, timedelta

import psycopg

from bench.stack import scratch_database
from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.projections.runner import PROJECTIONS, build_projection, follower_of
from conveyor.replay import _catch_up, _create_scratch, _drop_scratch, rebuild
from conveyor.settings import Settings, postgres_env


def generate(jobs: Jobs, n_jobs: int) -> int:
    """Jobs with eight events each (enqueue, three stages started and completed, one more)."""
    plan = jobs.workflows["code_review"].plan()
    at = datetime.now(UTC)
    for start in range(0, n_jobs, 500):
        batch = []
        for i in range(start, min(start + 500, n_jobs)):
            job = Job(key=f"bench-{i}", workflow="code_review", plan=plan,
                      trigger={"platform": "github", "repository": f"acme/r{i % 50}",
                               "pull_request": str(i), "head_commit": f"sha{i}"})
            for _ in range(3):
                stage = job.ready_stages()[0]
                job.start_stage(stage, 1, at=at)
                job.complete_stage(stage, 1, {"ok": True}, at=at + timedelta(milliseconds=i % 97))
            job.cancel(reason="bench", by="bench", at=at)
            batch.append(job)
        jobs.save(*batch)
    return jobs.recorder.max_notification_id() or 0


def bare_read(jobs: Jobs, head: int, page: int = 5000) -> tuple[float, float]:
    """Rows per second selecting the log, and events per second also decoding them."""
    start, position = time.perf_counter(), 0
    while position < head:
        notes = jobs.recorder.select_notifications(position, page, inclusive_of_start=False)
        position = notes[-1].id
    rows = head / (time.perf_counter() - start)
    start, position = time.perf_counter(), 0
    while position < head:
        notes = jobs.recorder.select_notifications(position, page, inclusive_of_start=False)
        for n in notes:
            jobs.mapper.to_domain_event(n)
        position = notes[-1].id
    return rows, head / (time.perf_counter() - start)


def batch_path(jobs: Jobs, url: str, name: str, head: int) -> float:
    """Events per second of the old rebuild: the live projector's batch path from zero."""
    view = build_projection(name, jobs, follower_of(jobs), "__bench").view
    with psycopg.connect(url, autocommit=True) as conn:
        _create_scratch(conn, view)
        started = time.perf_counter()
        _catch_up(jobs, [name], view.suffix, head)
        elapsed = time.perf_counter() - started
        _drop_scratch(conn, view)
    return head / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=25_000)
    parser.add_argument("--skip-old", action="store_true", help="leave out the old batch path")
    args = parser.parse_args()
    with scratch_database() as url:
        jobs = Jobs(env=postgres_env(url))
        started = time.perf_counter()
        head = generate(jobs, args.jobs)
        generated = time.perf_counter() - started
        rows, decoded = bare_read(jobs, head)
        settings = Settings(database_url=url)
        timings: dict[str, float] = {}
        if not args.skip_old:
            for name in PROJECTIONS:
                timings[f"before: batch path from zero, `{name}` alone"] = batch_path(
                    jobs, url, name, head)
        for names in (["jobs"], ["job_history"], ["metrics"], list(PROJECTIONS)):
            started = time.perf_counter()
            rebuild(settings, names, out=lambda _: None, stream=io.StringIO())
            label = "all three in one pass" if len(names) > 1 else f"`{names[0]}` alone"
            timings[f"`conveyor replay rebuild`, {label}"] = head / (
                time.perf_counter() - started)
        jobs.close()
    print(f"log: {head:,} events from {args.jobs:,} jobs, generated in {generated:.1f} s\n")
    print("| method | events/s | x bare read (rows) | x bare read (decoded) |")
    print("|---|---:|---:|---:|")
    print(f"| bare read: select_notifications, 5,000 a page | {rows:,.0f} | 1.00 | |")
    print(f"| bare read + decode (mapper.to_domain_event) | {decoded:,.0f} | "
          f"{decoded / rows:.2f} | 1.00 |")
    for label, rate in timings.items():
        print(f"| {label} | {rate:,.0f} | {rate / rows:.2f} | {rate / decoded:.2f} |")


if __name__ == "__main__":
    main()
