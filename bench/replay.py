"""Rebuild the read models from a log of 200,000+ events, beside the bare log read rate.

    .venv/bin/python -m bench.replay [--jobs 25000]
"""

from __future__ import annotations

import argparse
import io
import time
from datetime import UTC, datetime, timedelta

from bench.stack import scratch_database
from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.replay import rebuild
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=25_000)
    args = parser.parse_args()
    with scratch_database() as url:
        jobs = Jobs(env=postgres_env(url))
        started = time.perf_counter()
        head = generate(jobs, args.jobs)
        generated = time.perf_counter() - started
        rows, decoded = bare_read(jobs, head)
        settings = Settings(database_url=url)
        timings = {}
        for names in (["jobs"], ["job_history"], ["metrics"]):
            started = time.perf_counter()
            rebuild(settings, names, out=lambda _: None, stream=io.StringIO())
            timings[names[0]] = head / (time.perf_counter() - started)
        jobs.close()
    print(f"log: {head:,} events from {args.jobs:,} jobs, generated in {generated:.1f} s\n")
    print("| method | events/s | x bare read (rows) | x bare read (decoded) |")
    print("|---|---:|---:|---:|")
    print(f"| bare read: select_notifications, 5,000 a page | {rows:,.0f} | 1.00 | |")
    print(f"| bare read + decode (mapper.to_domain_event) | {decoded:,.0f} | "
          f"{decoded / rows:.2f} | 1.00 |")
    for name, rate in timings.items():
        print(f"| rebuild `{name}` (scratch tables + swap) | {rate:,.0f} | {rate / rows:.2f} "
              f"| {rate / decoded:.2f} |")


if __name__ == "__main__":
    main()
