"""Benchmark: concurrent saves, eventsourcing's pipelined insert against Conveyor's one statement.

Usage: .venv/bin/python -m bench.append [--seconds 10] [--processes 2] [--threads 8]

Method. Both recorders write the same one-event jobs (`Jobs.enqueue`) to their own scratch
database, from `--processes` processes of `--threads` threads each, every thread saving
back to back for `--seconds`. The baseline is the library's insert (`BEGIN`, `LOCK`,
`INSERT`, `Sync`, `COMMIT`, pipelined, `BoundedApplicationRecorder`), which holds the
events table's lock across two round trips to a client whose thread may be waiting for
the GIL; Conveyor's `JobsRecorder` sends one statement (`conveyor_append_events`), which
holds it for the server's own work. Each configuration also runs with one thread, where
no save waits for another. Printed: saves per second, latency p50/p99, and the ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
import uuid
from dataclasses import dataclass

from bench.stack import percentile, scratch_database

RECORDERS = {
    "eventsourcing's pipelined transaction": "conveyor.store.postgres:BoundedApplicationRecorder",
    "Conveyor's one statement": "conveyor.store.recorder:JobsRecorder",
}
TRIGGER = {"platform": "bench", "repository": "bench/append", "pull_request": "0",
           "head_commit": "0"}


@dataclass
class Run:
    saves: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.saves / self.seconds


def _process(database_url: str, topic: str, threads: int, seconds: float) -> list[float]:
    """One process's threads saving until the time is up; every save's latency."""
    from conveyor.application import Jobs
    from conveyor.settings import postgres_env

    jobs = Jobs(env={**postgres_env(database_url), "APPLICATION_RECORDER_TOPIC": topic,
                     "POSTGRES_POOL_SIZE": str(threads)})
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    def save() -> None:
        mine = []
        while time.monotonic() < deadline:
            began = time.perf_counter()
            jobs.enqueue("code_review", f"append:{uuid.uuid4()}", TRIGGER)
            mine.append(time.perf_counter() - began)
        latencies.extend(mine)

    workers = [threading.Thread(target=save) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    jobs.close()
    return latencies


def measure(topic: str, processes: int, threads: int, seconds: float) -> Run:
    with scratch_database() as url, multiprocessing.get_context("spawn").Pool(processes) as pool:
        began = time.monotonic()
        parts = pool.starmap(_process, [(url, topic, threads, seconds)] * processes)
        took = time.monotonic() - began
    latencies = [x for part in parts for x in part]
    return Run(len(latencies), min(took, seconds), latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    shapes = [(1, 1), (args.processes, args.threads)]
    rows = []
    for processes, threads in shapes:
        runs = {name: measure(topic, processes, threads, args.seconds)
                for name, topic in RECORDERS.items()}
        rows.append((processes, threads, runs))

    print(f"\nconcurrent one-event saves, {args.seconds:.0f} s each\n")
    print("| writers | recorder | saves/s | p50 ms | p99 ms | ratio |")
    print("|---|---|---|---|---|---|")
    for processes, threads, runs in rows:
        baseline = next(iter(runs.values()))
        for name, run in runs.items():
            print(f"| {processes} x {threads} | {name} | {run.rate:.0f} |"
                  f" {percentile(run.latencies, 50) * 1000:.1f} |"
                  f" {percentile(run.latencies, 99) * 1000:.1f} |"
                  f" {run.rate / baseline.rate:.2f} |")


if __name__ == "__main__":
    main()
