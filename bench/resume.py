"""Benchmark: resume latency of paused jobs, and dispatch latency between stages.

Usage: .venv/bin/python -m bench.resume [K] [RATE]

Method. A scratch database; `conveyor webhooks`, `worker` (2 processes x 4 threads),
`relay` and `events` run as in production with `CONVEYOR_AST_ANALYSIS=on`. K signed
deliveries make K `code_review` jobs, each of which pauses at `ast_analysis`. Once all K
wait, K `ast.task.completed` events are published to the `workflow.events` exchange (the
AMQP door) at RATE events a second (default 20: below the workers' capacity, so the
figures are latency, not queueing behind a burst), each publish time noted; all K waits
stay in the matcher's table while the events arrive. From
the event store: resume latency is a job's second `Started` of `ast_analysis` (the stage
running again, told the payload) minus its event's publish time; dispatch latency is a
stage's `Started` minus the latest `StageCompleted` of its predecessors, for the stages
after the resume (the two review branches and publish). Baseline in the same run: the time
to read one job's events back from the store (what `run_stage` must do before it starts).
"""

from __future__ import annotations

import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import orjson
import pika
import psycopg

from bench.stack import AMQP_URL, SECRET, percentile, running, scratch_database
from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.http.webhooks.github import sample_github_delivery
from conveyor.settings import postgres_env


def post(url: str, n: int) -> str:
    headers, body = sample_github_delivery(SECRET, pull_request=n)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(orjson.loads(response.read())["job_id"])


def count(url: str, topic: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM jobs_events WHERE topic LIKE %s",
                           (f"%:{topic}",)).fetchone()
        return int(row[0]) if row else 0


def wait_for(url: str, topic: str, n: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while count(url, topic) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {count(url, topic)} of {n} {topic}")
        time.sleep(0.2)


def latencies(jobs: Jobs, job_ids: list[str], published: dict[str, datetime],
              ) -> tuple[list[float], list[float], float]:
    resume: list[float] = []
    dispatch: list[float] = []
    started = time.perf_counter()
    for job_id in job_ids:
        events = list(jobs.repository.event_store.get(uuid.UUID(job_id)))
        plan = {s["stage"]: s["after"] for s in events[0].plan}
        completed: dict[str, datetime] = {}
        resumed = False
        for event in events:
            if isinstance(event, Job.StageCompleted):
                completed[event.stage] = event.at
            elif isinstance(event, Job.Resumed):
                resumed = True
            elif isinstance(event, Job.Started):
                if event.stage == "ast_analysis" and resumed:
                    resume.append((event.at - published[f"ast-{job_id}"]).total_seconds())
                elif resumed:  # the paced phase; the submission burst only measures queueing
                    before = [completed[p] for p in plan[event.stage] if p in completed]
                    if before:
                        dispatch.append((event.at - max(before)).total_seconds())
    read_per_job = (time.perf_counter() - started) / len(job_ids)
    return resume, dispatch, read_per_job


def main(k: int = 1000, rate: int = 20) -> None:
    suffix = uuid.uuid4().hex[:8]
    exchange = f"bench.events.{suffix}"
    with scratch_database() as url, running(
        url, ("webhooks", "worker", "relay", "events"),
        CONVEYOR_AST_ANALYSIS="on", CONVEYOR_EVENTS_EXCHANGE=exchange,
        CONVEYOR_EVENTS_QUEUE=f"conveyor-bench-events-{suffix}",
        CONVEYOR_RELAY_POLL_SECONDS="0.5",
    ) as stack:
        with ThreadPoolExecutor(8) as pool:
            job_ids = list(pool.map(lambda n: post(f"{stack.webhooks}/webhooks/github", n),
                                    range(1, k + 1)))
        wait_for(url, "Job.Paused", k)
        time.sleep(1.0)  # let the relay settle its timers before the burst
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        channel.confirm_delivery()
        published: dict[str, datetime] = {}
        start = time.monotonic()
        for i, job_id in enumerate(job_ids):
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the publisher: the load, not a synchronisation
            task = f"ast-{job_id}"
            body = orjson.dumps({"id": f"done-{task}", "key": task, "payload": {"ok": True}})
            published[task] = datetime.now(UTC)
            channel.basic_publish(exchange, "ast.task.completed", body,
                                  properties=pika.BasicProperties(delivery_mode=2))
        connection.close()
        wait_for(url, "Job.Completed", k)
        jobs = Jobs(env=postgres_env(url))
        resume, dispatch, read_per_job = latencies(jobs, job_ids, published)
        jobs.close()

    print(f"bench/resume.py: K = {k} paused code_review jobs, events published at {rate}/s by "
          "one AMQP publisher with confirms; processes webhooks+worker(2x4)+relay+events")
    print()
    print("| measure | p50 | p99 | n |")
    print("|---|---|---|---|")
    row = "| {} | {:.1f} ms | {:.1f} ms | {} |"
    print(row.format("resume latency (event published to stage running again)",
                     1000 * percentile(resume, 50), 1000 * percentile(resume, 99), len(resume)))
    print(row.format("dispatch latency (stage done to next stage started)",
                     1000 * percentile(dispatch, 50), 1000 * percentile(dispatch, 99),
                     len(dispatch)))
    print(f"| baseline: reading one job's events back | {1000 * read_per_job:.1f} ms | | {k} |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
