"""Benchmark: Conveyor side by side with a plain Dramatiq chain, all from one run.

Usage: .venv/bin/python -m bench.peers [--jobs 2000]

Method. The baseline is `bench.chain`: three no-op Dramatiq actors, each sending the
next, RabbitMQ with publisher confirms, `dramatiq` with 2 processes x 8 threads, N
chains sent back to back by one client. Conveyor runs its default production topology
with its default settings (webhooks and api 1 gunicorn worker x 8 threads each, relay,
projector, worker 1 process x 8 threads) on a scratch
database and queue; N signed GitHub deliveries are posted to `POST /webhooks/github`
(`bench.ingest.run`), each a new job of the workflow `CONVEYOR_REVIEW_WORKFLOW` names:
`noop3` (`bench.noop_workflow`, three no-op stages) by one client and by 8, then
`code_review` (5 stages, reference handlers, no delay) by one client. Each burst ends
when N jobs have finished. Rates are N over first submit to last `Job.Completed.at`;
dispatch latency, commits, hops and memory are read as the table's notes say.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import ingest
from bench.chain import ChainRun, run_chain
from bench.load import LoadRun
from bench.observe import CommitWatch, MemoryPeaks, cpu_seconds, own_cpu_seconds, xact_commit
from bench.stack import Stack, bare_save_rate, percentile, running, scratch_database
from bench.timeline import (
    completions,
    dispatch_latencies,
    hops,
    last_notification_id,
    read_streams,
    wait_finished,
)

TOPOLOGY = ("webhooks", "api", "relay", "projector", "worker")
ROOT = Path(__file__).resolve().parent.parent
IDLE_SECONDS = 5.0  # how long the idle commit rate is measured before each burst
# An idle backend reports its transaction counts within PostgreSQL's PGSTAT_IDLE_INTERVAL
# (10 s): wait that long before a count, so none leaks into the next window.
STATS_SETTLE_SECONDS = 12.0
NOT_MEASURED = ("the relay noticing an event, alone", "the relay publishing the next message "
                "(its confirm wait), alone")


@dataclass
class Burst:
    label: str
    stages: int
    load: LoadRun
    completed: int
    per_second: float
    dispatch: list[float]
    commits_per_job: float
    idle_rate: float
    hops: dict[str, list[float]]
    cpu_ms: dict[str, float]  # CPU per job, by process (and the bench's client)


@contextmanager
def conveyor(database: str, workflow: str) -> Iterator[tuple[Stack, CommitWatch, MemoryPeaks]]:
    """The production topology, warmed up, with the commit watch and memory sampler on."""
    with running(database, TOPOLOGY, PYTHONPATH=str(ROOT),
                 CONVEYOR_WORKFLOW_MODULES="bench.noop_workflow",
                 CONVEYOR_REVIEW_WORKFLOW=workflow,
                 CONVEYOR_REFERENCE_REVIEW_SECONDS="0") as stack:
        after = last_notification_id(database)
        ingest.run(f"{stack.webhooks}/webhooks/github", 8, 40, first_pr=1)
        wait_finished(database, after, 40)
        time.sleep(STATS_SETTLE_SECONDS)
        watch, memory = CommitWatch(database), MemoryPeaks(stack.pids)
        try:
            yield stack, watch, memory
        finally:
            watch.stop()
            memory.stop()


def burst(label: str, stages: int, stack: Stack, watch: CommitWatch, clients: int, n: int,
          first_pr: int) -> Burst:
    """Post `n` deliveries with `clients` clients; read the burst back from the store."""
    url = stack.database_url
    after = last_notification_id(url)
    x0, t0 = xact_commit(url), time.time()
    time.sleep(IDLE_SECONDS)
    x1, t1 = xact_commit(url), time.time()
    idle_rate = (x1 - x0 - 1) / (t1 - t0)  # less this bench's own read
    watched = watch.transactions
    database = url.rsplit("/", 1)[1]
    cpu0, client0 = cpu_seconds(stack.pids, database), own_cpu_seconds()
    load = ingest.run(f"{stack.webhooks}/webhooks/github", clients, n, first_pr)
    polls = wait_finished(url, after, n)
    cpu1, client1 = cpu_seconds(stack.pids, database), own_cpu_seconds()
    cpu = {name: cpu1[name] - cpu0[name] for name in cpu0} | {"client": client1 - client0}
    time.sleep(STATS_SETTLE_SECONDS)
    x2, t2 = xact_commit(url), time.time()
    own = 1 + polls + watch.transactions - watched
    streams = read_streams(url, after)
    done = completions(streams)
    commits = (x2 - x1 - own - idle_rate * (t2 - t1)) / max(1, len(done))
    return Burst(label, stages, load, len(done), len(done) / (max(done) - load.began),
                 dispatch_latencies(streams), commits, idle_rate, hops(streams, watch.stored_at),
                 {name: 1000 * seconds / max(1, len(done)) for name, seconds in cpu.items()})


def ms(values: list[float]) -> str:
    if not values:
        return "n/a (no samples)"
    return f"{1000 * percentile(values, 50):.1f} / {1000 * percentile(values, 99):.1f} ms"


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


def report(n: int, chain: ChainRun, bursts: list[Burst], bare: float,
           memory: dict[str, float], pss: float, watch_rtt: list[float]) -> None:
    print(f"bench/peers.py --jobs {n}: {os.cpu_count()} CPUs (nproc), load average "
          f"{os.getloadavg()[0]:.1f} at the end; local PostgreSQL and RabbitMQ; every figure "
          "below from this one run.")
    print(__doc__.split("Method. ", 1)[1].strip().replace("\n", " "))
    print()
    row("measure", "value", "p50 / p99", "note")
    row("---", "---", "---", "---")
    row("Dramatiq chain of 3 no-op actors, 1 client: workflows/s", f"{chain.per_second:.0f}",
        f"submit {ms(chain.submits)}", "publisher confirms on; nothing durable beyond the broker")
    for b in bursts:
        row(f"Conveyor {b.label}: workflows/s ({b.stages} stages each)", f"{b.per_second:.1f}",
            f"webhook answer {ms(b.load.latencies)}", f"{b.completed} of {n} completed; "
            f"{b.load.other} answers other than 202; answer target ≤ 3 / ≤ 10 ms")
    row("bare `Jobs` saves/s (one-event aggregates, same PostgreSQL)", f"{bare:.0f}", "—",
        f"Conveyor {bursts[0].label} ÷ bare saves = {bursts[0].per_second / bare:.3f}")
    for b in bursts:
        row(f"ratio: Conveyor {b.label} ÷ Dramatiq chain", f"{b.per_second / chain.per_second:.3f}",
            "—", f"workflows/s over workflows/s; target ≥ {0.45 if b.stages == 3 else 0.3}")
    for b in bursts:
        row(f"dispatch latency, {b.label}", "—", ms(b.dispatch), "StageCompleted.at → the "
            "next Started.at of the same job, over the burst; target p99 ≤ 50 ms")
    for b in bursts:
        row(f"commits per {b.stages}-stage job, {b.label}", f"{b.commits_per_job:.1f}", "—",
            "Δ xact_commit of the scratch database ÷ jobs completed, all processes, until the "
            "relay and projections caught up; includes read-only transactions; less the idle "
            f"rate ({b.idle_rate:.1f}/s) and the bench's own queries; target ≤ {b.stages + 2}")
    cores = os.cpu_count() or 1
    row("CPU per workflow, Dramatiq chain", f"{sum(chain.cpu_ms.values()):.1f} ms", "—",
        ", ".join(f"{k} {v:.1f}" for k, v in chain.cpu_ms.items()) + " ms; RabbitMQ's own "
        "not counted")
    for b in bursts:
        total = sum(b.cpu_ms.values())
        row(f"CPU per workflow, Conveyor {b.label}", f"{total:.1f} ms", "—",
            ", ".join(f"{k} {v:.1f}" for k, v in b.cpu_ms.items()) + " ms; RabbitMQ's own not "
            f"counted; {cores} cores ÷ this = {1000 * cores / total:.0f} workflows/s at most")
    first = bursts[0]
    for i, (name, values) in enumerate(first.hops.items()):
        row(f"hop ({first.label}): {name}", "—", ms(values), f"{len(values)} stages" + (
            "; 'before' = the event that made the stage ready; 'stored' = seen by a LISTEN on "
            f"jobs_events, an upper bound late by {ms(watch_rtt)}" if i == 0 else ""))
    for name in NOT_MEASURED:
        row(f"hop ({first.label}): {name}", "—", "n/a (needs instrumentation)",
            "not observable from outside conveyor/; both are inside the relay's hop above")
    row(f"hop ({first.label}): releasing the lease", "—", "0 (no hop)",
        "in the outcome's own statement (`conveyor_append_events`)")
    for name, mib in memory.items():
        row(f"peak resident MiB, {name} (whole process tree)", f"{mib:.0f}", "—",
            "VmRSS summed over the tree, sampled every 0.5 s, highest of both stacks; "
            "target < 80")
    row("peak resident MiB, sum of the five", f"{sum(memory.values()):.0f}", "—",
        "shared pages of forked children count in each, as VmRSS does; target < 300")
    row("peak proportional MiB (PSS), the five together", f"{pss:.0f}", "—",
        "sampled at once, each shared page counted once across them")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=2000)
    n = parser.parse_args().jobs
    chain = run_chain(n)
    bursts: list[Burst] = []
    with scratch_database() as database:
        with conveyor(database, "noop3") as (stack, watch, peaks):
            bursts.append(burst("noop3, 1 client", 3, stack, watch, 1, n, 1_000_000))
            bursts.append(burst("noop3, 8 clients", 3, stack, watch, 8, n, 2_000_000))
            rtt = list(watch.round_trips)
        memory, pss = dict(peaks.peaks), peaks.pss_peak
        bare = bare_save_rate(database, n)
    with scratch_database() as database, conveyor(database, "code_review") as (
            stack, watch, peaks):
        bursts.append(burst("code_review, 1 client", 5, stack, watch, 1, n, 3_000_000))
    memory = {name: max(mib, peaks.peaks[name]) for name, mib in memory.items()}
    report(n, chain, bursts, bare, memory, max(pss, peaks.pss_peak), rtt)


if __name__ == "__main__":
    main()
