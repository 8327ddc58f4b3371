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

import http.client
import multiprocessing
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.stack import SECRET, bare_save_rate, percentile, running, scratch_database
from conveyor.http.webhooks.github import sample_github_delivery

Delivery = tuple[dict[str, str], bytes]


@dataclass
class Run:
    clients: int
    accepted: int
    other: int
    wall: float
    latencies: list[float]


def client_process(
    url: str, deliveries: list[Delivery], threads: int, start: float,
    results: multiprocessing.Queue[tuple[int, int, float, list[float]]],
) -> None:
    """Post `deliveries` over `threads` keep-alive connections from `start` on."""
    parts = urlsplit(url)
    shares = [deliveries[i::threads] for i in range(threads)]
    latencies: list[float] = []
    counts = {"accepted": 0, "other": 0}
    lock = threading.Lock()

    def work(share: list[Delivery]) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine: list[float] = []
        accepted = other = 0
        while time.monotonic() < start:
            time.sleep(0.001)
        for headers, body in share:
            began = time.perf_counter()
            conn.request("POST", parts.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - began)
            if response.status == 202:
                accepted += 1
            else:
                other += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            counts["accepted"] += accepted
            counts["other"] += other

    workers = [threading.Thread(target=work, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((counts["accepted"], counts["other"], time.monotonic(), latencies))


def run(url: str, clients: int, n: int, first_pr: int) -> Run:
    """Post `n` new deliveries with `clients` concurrent connections in all."""
    processes = 2 if clients <= 8 else 4
    deliveries = [sample_github_delivery(SECRET, pull_request=first_pr + i) for i in range(n)]
    results: multiprocessing.Queue[tuple[int, int, float, list[float]]] = multiprocessing.Queue()
    start = time.monotonic() + 1.0
    spawned = [
        multiprocessing.Process(
            target=client_process,
            args=(url, deliveries[p::processes], clients // processes, start, results),
        )
        for p in range(processes)
    ]
    for process in spawned:
        process.start()
    outcomes = [results.get(timeout=600) for _ in spawned]
    for process in spawned:
        process.join()
    return Run(
        clients=clients,
        accepted=sum(o[0] for o in outcomes),
        other=sum(o[1] for o in outcomes),
        wall=max(o[2] for o in outcomes) - start,
        latencies=[lat for o in outcomes for lat in o[3]],
    )


def webhook_workers(port: int) -> dict[int, int]:
    """VmRSS in kB of each gunicorn worker serving `port`: the children of its master."""
    procs: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        procs[int(entry.name)] = (ppid, cmdline)
    bind = f"127.0.0.1:{port}"
    serving = {pid for pid, (_, cmd) in procs.items() if "gunicorn" in cmd and bind in cmd}
    masters = {pid for pid in serving if procs[pid][0] not in serving}
    rss: dict[int, int] = {}
    for pid, (ppid, _) in procs.items():
        if ppid in masters:
            for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss[pid] = int(line.split()[1])
    return rss


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

    workers = os.environ.get("CONVEYOR_WEB_WORKERS", "2")
    threads = os.environ.get("CONVEYOR_WEB_THREADS", "8")
    print(f"bench/ingest.py: {n} signed GitHub `pull_request` deliveries per run, each a new "
          f"job; gunicorn gthread {workers} workers x {threads} threads; "
          f"{cpu_count()} CPUs shared by clients, gunicorn and PostgreSQL")
    print()
    print("| measure | 8 clients | 64 clients |")
    print("|---|---|---|")
    rates = [r.accepted / r.wall for r in runs]
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
    print(f"| warm-up run (not counted) | {warmup.accepted} accepted |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
