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

Slow clients. One client posts min(N, 500) deliveries back to back, alone and then while
200 connections hold a request's head and one byte of a 100,000-byte body
(`bench.slow.SlowClients`); the slow ones should get 408 after `CONVEYOR_BODY_TIMEOUT`.
The same app under gunicorn's plain `gthread` worker (`GUNICORN_CMD_ARGS=--worker-class
gthread`) is the comparison: its 8-client throughput, and how many of 3 deliveries it
answers within 5 s each while the slow clients hold it.
"""

from __future__ import annotations

import http.client
import os
import sys
import time
from urllib.parse import urlsplit

from bench.load import LoadRun, Request, run_load
from bench.observe import process_table
from bench.slow import SlowClients
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


def slow_scenario(url: str, n: int, first_pr: int) -> tuple[LoadRun, LoadRun, SlowClients]:
    """One client's deliveries alone, then again while 200 slow clients hold connections."""
    alone = run(url, 1, n, first_pr)
    with SlowClients(url, 200) as slow:
        time.sleep(0.5)  # every slow head is in before the real deliveries start
        beside = run(url, 1, n, first_pr + n)
        slow.wait(Settings.from_env().body_timeout + 10)
    return alone, beside, slow


def starved(url: str, first_pr: int) -> int:
    """How many of 3 deliveries are answered within 5 s each while 200 slow clients wait."""
    path = urlsplit(url)
    answered = 0
    with SlowClients(url, 200):
        time.sleep(0.5)
        for i in range(3):
            headers, body = sample_github_delivery(SECRET, pull_request=first_pr + i)
            conn = http.client.HTTPConnection(path.hostname or "", path.port, timeout=5)
            try:
                conn.request("POST", path.path, body=body, headers=headers)
                answered += conn.getresponse().status == 202
            except OSError:
                pass
            finally:
                conn.close()
    return answered


def cpu_count() -> int:
    return os.cpu_count() or 1


def eight_clients(database: str, n: int, first_pr: int, **env: str) -> LoadRun:
    """A fresh `conveyor webhooks`, warmed up, then `n` deliveries from 8 clients."""
    with running(database, ("webhooks",), **env) as stack:
        url = f"{stack.webhooks}/webhooks/github"
        run(url, 8, 400, first_pr=first_pr)
        return run(url, 8, n, first_pr=first_pr + 1000)


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
            alone, beside, slow = slow_scenario(url, min(n, 500), first_pr=300_000)
        # gthread and this worker take turns (best of 2 each), so the shared machine's
        # noise hits both; two stacks at once would exhaust PostgreSQL's connections.
        gthread = {"GUNICORN_CMD_ARGS": "--worker-class gthread"}
        plain_runs = [eight_clients(database, n, 400_000, **gthread)]
        again = eight_clients(database, n, 500_000)
        plain_runs.append(eight_clients(database, n, 600_000, **gthread))
        if again.per_second > runs[0].per_second:
            runs[0] = again
        plain_run = max(plain_runs, key=lambda r: r.per_second)
        with running(database, ("webhooks",), **gthread) as plain:
            plain_answered = starved(f"{plain.webhooks}/webhooks/github", first_pr=700_000)
        baseline = bare_save_rate(database, n)

    workers, threads = Settings.from_env().web_workers, Settings.from_env().web_threads
    print(f"bench/ingest.py: {n} signed GitHub `pull_request` deliveries per run, each a new "
          f"job; gunicorn, buffering thread worker, {workers} workers x {threads} threads; "
          f"{cpu_count()} CPUs shared by clients, gunicorn and PostgreSQL")
    print()
    print("| measure | 8 clients (best of 2 runs) | 64 clients |")
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
    print()
    timeout = Settings.from_env().body_timeout
    timed_out = [seconds for seconds, status in slow.answers if status == 408]
    print(f"Slow clients: one client posting {len(alone.latencies)} deliveries back to back; "
          f"200 connections each sending a head and 1 byte of a {100_000}-byte body; "
          f"CONVEYOR_BODY_TIMEOUT={timeout:g} s")
    print()
    print("| measure | alone | beside 200 slow clients |")
    print("|---|---|---|")
    for p in (50, 99):
        print(f"| fast delivery p{p} | " + " | ".join(
            f"{1000 * percentile(r.latencies, p):.1f} ms" for r in (alone, beside)) + " |")
    print(f"| answers other than 202 | {alone.other} | {beside.other} |")
    print(f"| slow clients answered 408 | - | {len(timed_out)} of 200, after "
          f"{min(timed_out, default=0):.1f} to {max(timed_out, default=0):.1f} s |")
    print()
    print("| gunicorn gthread (the previous worker class), same run | value |")
    print("|---|---|")
    print(f"| accepted per second, 8 clients (best of 2, as above) | {plain_run.per_second:.0f} "
          f"(buffering worker / gthread = {rates[0] / plain_run.per_second:.2f}) |")
    print(f"| deliveries answered within 5 s beside 200 slow clients | {plain_answered} of 3 |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
