"""Benchmark: jobs started through `POST /workflow-queue/jobs`, beside webhook ingest.

Usage: .venv/bin/python -m bench.api_start [STARTS_PER_RUN]

Method. A scratch database, migrated; `conveyor api` and `conveyor webhooks` started as in
production (gunicorn, settings from the environment), nothing else (accepting a job is
measured, not running it). Each run sends STARTS_PER_RUN distinct requests from keep-alive
`http.client` connections in client processes (`bench.load`), bodies made before the clock
starts: API starts of `code_review`, each for a new pull request (a new pull request
aggregate and job, as a webhook's), and, in the same run, signed GitHub `pull_request`
deliveries of new pull requests to the webhook app: the baseline, which does the same
writes plus a signature check and parsing. Throughput counts 202 answers over the wall
time; latency is per request, client side. Each side gets a warm-up run first (not counted).
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import orjson

from bench.ingest import run as ingest_run
from bench.load import LoadRun, Request, run_load
from bench.stack import percentile, running, scratch_database
from conveyor.settings import Settings

TOKEN = "bench-write"


def start_run(api: str, clients: int, n: int, first_pr: int) -> LoadRun:
    """Start `n` new reviews through the API with `clients` concurrent connections."""
    url = f"{api}/workflow-queue/jobs"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    requests: list[Request] = []
    for i in range(first_pr, first_pr + n):
        body = orjson.dumps({"workflow": "code_review", "key": f"bench-{i}", "input": {
            "platform": "github", "repository": "bench/api", "pull_request": str(i),
            "head_commit": f"{i:040x}", "base_branch": "main"}})
        requests.append(("POST", urlsplit(url).path, headers, body))
    return run_load(url, requests, clients, ok_status=202)


def main(n: int = 2000) -> None:
    with scratch_database() as database, \
            running(database, ("api", "webhooks"), CONVEYOR_API_WRITE_TOKENS=TOKEN) as stack:
        hook = f"{stack.webhooks}/webhooks/github"
        start_run(stack.api, 8, 300, first_pr=1)
        ingest_run(hook, 8, 300, first_pr=1_000_000)
        results: dict[int, tuple[LoadRun, LoadRun]] = {}
        for clients, base in ((1, 10_000), (8, 100_000)):
            count = n if clients == 8 else max(1, n // 4)
            # Taking turns, so the shared machine's swings hit both alike.
            api = start_run(stack.api, clients, count, first_pr=base)
            webhook = ingest_run(hook, clients, count, first_pr=2_000_000 + base)
            results[clients] = (api, webhook)

    settings = Settings.from_env()
    print(f"bench/api_start.py: code_review started through the API against signed GitHub"
          f" deliveries, each a new pull request; {n // 4} requests at 1 client, {n} at 8;"
          f" gunicorn {settings.web_workers} worker(s) x {settings.web_threads} threads each")
    print()
    print("| clients | API starts/s | p50 | p99 | webhook deliveries/s | p50 | p99 |"
          " API / webhook | non-202 answers (API, webhook) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for clients, (api, webhook) in results.items():
        cells = [f"{clients}"]
        for run in (api, webhook):
            cells += [f"{run.per_second:.0f}",
                      f"{1000 * percentile(run.latencies, 50):.1f} ms",
                      f"{1000 * percentile(run.latencies, 99):.1f} ms"]
        cells += [f"{api.per_second / webhook.per_second:.2f}", f"{api.other}, {webhook.other}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
