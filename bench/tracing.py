"""Benchmark: the cost of traces, e2e jobs/s with OTLP export on against off in one run.

Usage: .venv/bin/python -m bench.tracing [N] [CONCURRENCY] [ROUNDS]

Each round runs the five processes twice on a fresh scratch database, once untraced and
once with `OTEL_EXPORTER_OTLP_ENDPOINT` pointed at a sink in this process (OTLP/HTTP,
protobuf; it counts the spans it decodes), and posts N signed deliveries of the no-op
3-stage workflow (`bench/noop_workflow.py`, as bench/peers.py uses: Conveyor's own cost
per stage, which tracing adds to) from CONCURRENCY clients, until every job completes.
The order alternates between rounds, as the shared machine's load swings. Peak resident
memory of each process tree is sampled (bench/observe.py). Target: under 10 % slower.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.e2e import deliver_until_completed
from bench.observe import MemoryPeaks
from bench.stack import running, scratch_database

PROCESSES = ("webhooks", "api", "worker", "relay", "projector")
# The processes import bench.noop_workflow from the checkout.
ROOT = Path(__file__).resolve().parent.parent


class Sink:
    """Counts the spans OTLP/HTTP exporters send it."""

    def __init__(self) -> None:
        self.spans = 0
        self.lock = threading.Lock()


@contextmanager
def sink() -> Iterator[tuple[Sink, str]]:
    counted = Sink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest.FromString(body)
            with counted.lock:
                counted.spans += sum(len(s.spans) for r in request.resource_spans
                                     for s in r.scope_spans)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield counted, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def one_run(n: int, concurrency: int, **env: str) -> tuple[float, dict[str, float]]:
    """Jobs/s from the first delivery to the last completion, and peak MiB per process."""
    with scratch_database() as url, running(
            url, PROCESSES, PYTHONPATH=str(ROOT), CONVEYOR_RELAY_POLL_SECONDS="0.5",
            CONVEYOR_WORKFLOW_MODULES="bench.noop_workflow",
            CONVEYOR_REVIEW_WORKFLOW="noop3", **env) as stack:
        peaks = MemoryPeaks(stack.pids)
        elapsed = deliver_until_completed(url, stack.webhooks, n, concurrency, timeout=180)
        return n / elapsed, peaks.stop()


def main(n: int = 300, concurrency: int = 8, rounds: int = 2) -> None:
    off: list[float] = []
    on: list[float] = []
    memory: dict[str, dict[str, float]] = {"off": {}, "on": {}}
    spans = 0
    with sink() as (counted, endpoint):
        for i in range(rounds):
            for traced in ((False, True) if i % 2 == 0 else (True, False)):
                env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint} if traced else {}
                rate, peaks = one_run(n, concurrency, **env)
                (on if traced else off).append(rate)
                key = "on" if traced else "off"
                for name, mib in peaks.items():
                    memory[key][name] = max(memory[key].get(name, 0.0), mib)
        time.sleep(1)
        spans = counted.spans
    best_off, best_on = max(off), max(on)
    print(f"bench/tracing.py: {n} signed deliveries of the no-op 3-stage workflow per run, "
          f"{concurrency} clients, {rounds} rounds of (off, on) alternating; processes "
          "webhooks+api+worker+relay+projector, local PostgreSQL and RabbitMQ")
    print()
    print("| measure | traces off | traces on (OTLP/HTTP) | on / off |")
    print("|---|---|---|---|")
    print(f"| e2e jobs/s, best run | {best_off:.1f} | {best_on:.1f} | {best_on / best_off:.2f} |")
    print(f"| e2e jobs/s, every run | {', '.join(f'{r:.1f}' for r in off)} "
          f"| {', '.join(f'{r:.1f}' for r in on)} | |")
    for name in PROCESSES:
        a, b = memory["off"].get(name, 0.0), memory["on"].get(name, 0.0)
        print(f"| peak resident MiB, {name} | {a:.0f} | {b:.0f} | {b / a if a else 0:.2f} |")
    print(f"| spans received | 0 | {spans} ({spans / (n * len(on)):.1f} a job) | |")
    print()
    slower = 1 - best_on / best_off
    print(f"Tracing costs {100 * slower:.1f} % of e2e throughput (target: under 10 %).")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
