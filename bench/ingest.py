"""Benchmark: signed GitHub deliveries into `conveyor webhooks` under gunicorn.

Usage: .venv/bin/python -m bench.ingest [DELIVERIES_PER_RUN]

Method. A scratch database, migrated; `conveyor webhooks` started as in production
(gunicorn, `conveyor/gunicorn_conf.py`, settings from the environment). Start-up is timed
from spawning the command to the first answered `GET /health/live`. Each run posts
DELIVERIES_PER_RUN distinct signed `pull_request` deliveries (each a new pull request and
head commit, so each is a new job) from client processes, each holding keep-alive
`http.client` connections in threads, so the client's GIL does not cap the server; bodies
and signatures are made before the clock starts. Throughput counts 202 answers over the
wall time from the common start to the last answer; latency is per request, client side.
Resident memory is VmRSS of each gunicorn worker (children of the master) after the runs.
The baseline is `Jobs` saving one-event aggregates one after another on the same database
in the same run (`bench.stack.bare_save_rate`).
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlsplit

from bench.load import LoadRun, Request, run_load
from bench.observe import process_table
from bench.stack import SECRET, bare_save_rate, percentile, running, scratch_database
from conveyor.http.webhooks.github import sample_github_delivery
from conveyor.settings import Settings


def run(url: str, clients: int, n: int, first_pr: int) -> LoadRun:
    """Post `n` new deliveries with `clients` concurrent connections in all."""
    path = urlsplit(url).path
    requests: list[Request] = []
    for i in range(n):
        headers, body = sample_github_delivery(SECRET, pull_request=first_pr + i)
        requests.append(("POST", path, headers, body))
    return run_load(url, requests, clients, ok_status=202)


def webhook_workers(port: int) -> dict[int, int]:
    """VmRSS in kB of each gunicorn worker serving `port`: the children of its master."""
    table = process_table()
    bind = f"127.0.0.1:{port}"
    serving = {pid for pid, p in table.items() if "gunicorn" in p.cmdline and bind in p.cmdline}
    masters = {pid for pid in serving if table[pid].ppid not in serving}
    return {pid: p.rss_kb for pid, p in table.items() if p.ppid in masters}


def cpu_count() -> int:
    return os.cpu_count() or 1


def main(n: int = 3000) -> None:
    with scratch_database() as database:
        spawned_at = time.monotonic()
        with running(database, ("webhooks",)) as stack:
            startup = time.monotonic() - spawned_at
            url = f"{stack.webhooks}/webhooks/github"
            port = int(urlsplit(stack.webhooks).port or 0)
            # The first delivery builds the event-sourcing application in its worker.
            first = run(url, 2, 2, first_pr=1)
            warmup = run(url, 8, 400, first_pr=10)
            runs = [run(url, 8, n, first_pr=100_000), run(url, 64, n, first_pr=200_000)]
            memory = webhook_workers(port)
        baseline = bare_save_rate(database, n)

    workers, threads = Settings.from_env().web_workers, Settings.from_env().web_threads
    print(f"bench/ingest.py: {n} signed GitHub `pull_request` deliveries per run, each a new "
          f"job; gunicorn gthread {workers} workers x {threads} threads; "
          f"{cpu_count()} CPUs shared by clients, gunicorn and PostgreSQL")
    print()
    print("| measure | 8 clients | 64 clients |")
    print("|---|---|---|")
    rates = [r.per_second for r in runs]
    print(f"| accepted deliveries per second | {rates[0]:.0f} | {rates[1]:.0f} |")
    print("| latency p50 | " + " | ".join(
        f"{1000 * percentile(r.latencies, 50):.1f} ms" for r in runs) + " |")
    print("| latency p99 | " + " | ".join(
        f"{1000 * percentile(r.latencies, 99):.1f} ms" for r in runs) + " |")
    print("| answers other than 202 | " + " | ".join(str(r.other) for r in runs) + " |")
    print(f"| baseline: bare `Jobs` saves per second | {baseline:.0f} | {baseline:.0f} |")
    print(f"| ratio ingest / bare saves | {rates[0] / baseline:.2f} | {rates[1] / baseline:.2f} |")
    print()
    print("| process measure | value |")
    print("|---|---|")
    print(f"| start-up, spawn to first answered request | {1000 * startup:.0f} ms |")
    first_ms = 1000 * max(first.latencies)
    print(f"| first delivery (builds the application and its pool) | {first_ms:.0f} ms |")
    for pid, kb in sorted(memory.items()):
        print(f"| resident memory, worker {pid} (VmRSS) | {kb / 1024:.1f} MB |")
    print(f"| warm-up run (not counted) | {warmup.ok} accepted |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
