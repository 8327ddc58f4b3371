"""Benchmark: list and metrics requests to `conveyor api` under gunicorn over 100,000 jobs.

Usage: .venv/bin/python -m bench.api [--jobs 100000] [--requests 3000]

Method. A scratch database, migrated; the jobs are saved in batches of aggregates
(`Jobs.save`) with varied histories (pending, running, completed, failed, cancelled;
50 repositories, two platforms) and the read models built by `conveyor replay rebuild`.
`conveyor api` runs as in production (gunicorn, `conveyor/gunicorn_conf.py`). Each run
sends REQUESTS requests from client processes holding keep-alive `http.client`
connections in threads, so the client's GIL does not cap the server; latency is per
request, client side. List requests rotate over four filters (none, status, repository,
platform), 50 jobs a page. The baseline is the same SQL the handler runs (`ReadModels`),
timed directly through psycopg from one connection, in the same run.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench.load import LoadRun, Request, run_load
from bench.stack import percentile, running, scratch_database
from conveyor.aggregates import Classification, Job
from conveyor.application import Jobs
from conveyor.http.reads import JobFilter, ReadModels
from conveyor.replay import rebuild
from conveyor.settings import Settings, postgres_env

TOKEN = "bench"
LIST_PATHS = (
    "/workflow-queue/jobs?limit=50",
    "/workflow-queue/jobs?status=COMPLETED&limit=50",
    "/workflow-queue/jobs?repository=acme/r7&limit=50",
    "/workflow-queue/jobs?platform=gitlab&limit=50",
)
LIST_FILTERS = (JobFilter(), JobFilter(status="COMPLETED"), JobFilter(repository="acme/r7"),
                JobFilter(platform="gitlab"))
METRICS_PATHS = ("/workflow-queue/metrics",)


def generate(jobs: Jobs, n_jobs: int, batch: int = 1000) -> int:
    """Jobs in every status, saved a batch of aggregates at a time; return the log head."""
    plan = jobs.workflows["code_review"].plan()
    at = datetime.now(UTC) - timedelta(days=2)
    for first in range(0, n_jobs, batch):
        aggregates = []
        for i in range(first, min(first + batch, n_jobs)):
            job = Job(key=f"bench-{i}", workflow="code_review", plan=plan,
                      trigger={"platform": "gitlab" if i % 5 == 0 else "github",
                               "repository": f"acme/r{i % 50}", "pull_request": str(i),
                               "head_commit": f"sha{i}"})
            when = at + timedelta(seconds=i)
            kind = i % 10
            if kind >= 2:
                stage = job.ready_stages()[0]
                job.start_stage(stage, 1, at=when)
                if kind == 3:
                    job.fail_stage(stage, 1, Classification.PERMANENT, "boom",
                                   at=when + timedelta(seconds=1))
                elif kind == 4:
                    job.cancel(reason="bench", by="bench", at=when)
                elif kind >= 5:
                    job.complete_stage(stage, 1, {"ok": True},
                                       at=when + timedelta(milliseconds=i % 997))
                    while kind >= 6 and (ready := job.ready_stages()):
                        job.start_stage(ready[0], 1, at=when)
                        job.complete_stage(ready[0], 1, None, at=when + timedelta(seconds=2))
            aggregates.append(job)
        jobs.save(*aggregates)
    return jobs.recorder.max_notification_id() or 0


@dataclass
class Run:
    name: str
    load: LoadRun


def run(url: str, name: str, paths: tuple[str, ...], clients: int, n: int) -> Run:
    """Send `n` GETs cycling over `paths` with `clients` concurrent connections in all."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    requests: list[Request] = [("GET", paths[i % len(paths)], headers, None) for i in range(n)]
    return Run(name, run_load(url, requests, clients, ok_status=200))


def direct(n: int, query: Callable[[int], object]) -> list[float]:
    """Latencies of calling `query` `n` times in a row."""
    latencies = []
    for i in range(n):
        began = time.perf_counter()
        query(i)
        latencies.append(time.perf_counter() - began)
    return latencies


def baseline(url: str, n: int) -> dict[str, list[float]]:
    """The handlers' own SQL through `ReadModels`, from one connection, one after another."""
    reads = ReadModels(url, max_size=1)
    now = datetime.now(UTC)
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    days_since = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=6)
    try:
        return {
            "list": direct(n, lambda i: reads.jobs(LIST_FILTERS[i % 4], None, 51, "desc",
                                                   visible=None)),
            "metrics": direct(n, lambda i: reads.metrics(None, since, days_since, visible=None)),
        }
    finally:
        reads.close()


def ms(values: list[float], p: float) -> str:
    return f"{1000 * percentile(values, p):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    with scratch_database() as database:
        jobs = Jobs(env=postgres_env(database))
        started = time.perf_counter()
        head = generate(jobs, args.jobs)
        generated = time.perf_counter() - started
        jobs.close()
        started = time.perf_counter()
        rebuild(Settings(database_url=database), ["jobs", "job_history", "metrics"],
                out=lambda _: None, stream=io.StringIO())
        rebuilt = time.perf_counter() - started
        runs: list[Run] = []
        with running(database, ("api",), CONVEYOR_API_READ_TOKENS=TOKEN) as stack:
            run(stack.api, "warm-up", LIST_PATHS + METRICS_PATHS, 8, 400)
            for clients in (8, 64):
                runs.append(run(stack.api, "list", LIST_PATHS, clients, args.requests))
                runs.append(run(stack.api, "metrics", METRICS_PATHS, clients, args.requests))
        direct_sql = baseline(database, min(args.requests, 1000))

    workers, threads = Settings.from_env().web_workers, Settings.from_env().web_threads
    print(f"bench/api.py: {args.jobs:,} jobs ({head:,} events, saved in {generated:.0f} s, "
          f"read models rebuilt in {rebuilt:.1f} s); {args.requests} requests per run; "
          f"gunicorn gthread {workers} workers x {threads} threads; "
          f"{os.cpu_count()} CPUs shared by clients, gunicorn and PostgreSQL\n")
    print("| method | clients | requests/s | p50 ms | p99 ms | non-200 |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in runs:
        load = r.load
        print(f"| GET {r.name} through `conveyor api` | {load.clients} | {load.per_second:,.0f} | "
              f"{ms(load.latencies, 50)} | {ms(load.latencies, 99)} | {load.other} |")
    for name, latencies in direct_sql.items():
        print(f"| baseline: the {name} handler's SQL via psycopg, in a row | 1 | "
              f"{len(latencies) / sum(latencies):,.0f} | {ms(latencies, 50)} | "
              f"{ms(latencies, 99)} | |")


if __name__ == "__main__":
    main()
