"""Benchmark: signed deliveries in, completed jobs out, through every real process.

Usage: .venv/bin/python -m bench.e2e [N] [CONCURRENCY]

Posts N signed GitHub deliveries (distinct pull requests) to `conveyor webhooks`, with
`api`, `worker`, `relay` and `projector` running against a scratch database and a
private queue, and reads each job's enqueue and completion times from the `jobs` read
model. Baseline, measured in the same run on the same PostgreSQL: `Jobs` saving
one-event aggregates one after another.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg

from bench.stack import SECRET, bare_save_rate, percentile, running, scratch_database
from conveyor.http.webhooks.github import sample_github_delivery


def post(url: str, n: int) -> int:
    headers, body = sample_github_delivery(SECRET, pull_request=n)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def deliver_until_completed(url: str, webhooks: str, n: int, concurrency: int,
                            timeout: float = 600) -> float:
    """Post N deliveries from `concurrency` clients; seconds until every job completed."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(lambda i: post(f"{webhooks}/webhooks/github", i),
                                 range(1, n + 1)))
    assert statuses.count(202) == n, statuses
    with psycopg.connect(url) as conn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'COMPLETED'").fetchone()
            if row and row[0] == n:
                return time.perf_counter() - start
            time.sleep(0.05)
    raise RuntimeError(f"{n} jobs did not complete within {timeout:.0f} s")


def main(n: int = 500, concurrency: int = 8) -> None:
    with scratch_database() as url:
        with running(url, ("webhooks", "api", "worker", "relay", "projector"),
                     CONVEYOR_RELAY_POLL_SECONDS="0.5") as stack:
            elapsed = deliver_until_completed(url, stack.webhooks, n, concurrency)
            with psycopg.connect(url) as conn:
                latencies = [r[0] for r in conn.execute(
                    "SELECT EXTRACT(EPOCH FROM finished_at - created_at) FROM jobs"
                    " WHERE status = 'COMPLETED'")]
        baseline = bare_save_rate(url, n)

    done = len(latencies)
    print(f"bench/e2e.py: {n} signed deliveries, {concurrency} concurrent clients, "
          "processes webhooks+api+worker(2x4)+relay+projector, local PostgreSQL and RabbitMQ")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| jobs completed | {done} of {n} |")
    print(f"| jobs completed per second (5 stages each) | {done / elapsed:.1f} |")
    p50 = 1000 * percentile(latencies, 50)
    print(f"| job latency p50 (enqueued to completed) | {p50:.0f} ms |")
    print(f"| job latency p99 | {1000 * percentile(latencies, 99):.0f} ms |")
    print(f"| baseline: bare `Jobs` saves per second (one-event aggregates) | {baseline:.0f} |")
    print(f"| ratio: jobs/s to bare saves/s | {done / elapsed / baseline:.3f} |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
