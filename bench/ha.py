"""Benchmark: Conveyor on quorum queues of a three-node RabbitMQ cluster against classic
queues on one node, from one run.

Usage: .venv/bin/python -m bench.ha [--jobs 1000]

Method. Two private RabbitMQ servers started from the Debian packages in this run (the
ha tier's harness, tests/ha/rabbit_cluster.py and tests/servers.py), never the machine's:
first one node with `CONVEYOR_QUEUE_TYPE=classic` (the baseline), then three clustered
nodes with `CONVEYOR_QUEUE_TYPE=quorum` (every queue replicated on the three, each
publish confirmed once a majority has it). Against each, Conveyor's default topology
(bench.peers) on a scratch database of the machine's PostgreSQL, every process given
every node (the cluster's first node first); N signed GitHub deliveries posted by 8
clients, each a job of `noop3` (three no-op stages), after 40 to warm up. Rate = N over
first submit to last `Job.Completed.at`, as bench.peers counts. All five processes and
the three nodes share the machine's cores, so the cluster's rate includes two more
Erlang VMs' CPU.

The PostgreSQL failover half is `bench.ha_failover.measure` (its own docstring gives the
method): seconds without service, and acknowledged deliveries lost, against the issue's
targets (under 10 s, none).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import ha_failover, ingest
from bench.peers import TOPOLOGY
from bench.stack import running, scratch_database
from bench.timeline import completions, last_notification_id, read_streams, wait_finished
from tests.ha.rabbit_cluster import rabbit_cluster
from tests.servers import private_rabbitmq

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 8
WARM_UP = 40


@dataclass
class Rate:
    label: str
    completed: int
    per_second: float
    other: int  # answers other than 202


@contextmanager
def one_node() -> Iterator[str]:
    with private_rabbitmq() as node:
        yield node.url


@contextmanager
def three_nodes() -> Iterator[str]:
    with rabbit_cluster(3) as cluster:
        yield cluster.url(0)


def measure(label: str, amqp_url: str, queue_type: str, n: int) -> Rate:
    """noop3 jobs/s of Conveyor's default topology on `amqp_url`'s queues of `queue_type`."""
    with scratch_database() as database, running(
            database, TOPOLOGY, PYTHONPATH=str(ROOT),
            CONVEYOR_AMQP_URL=amqp_url, CONVEYOR_QUEUE_TYPE=queue_type,
            CONVEYOR_WORKFLOW_MODULES="bench.noop_workflow", CONVEYOR_REVIEW_WORKFLOW="noop3",
            CONVEYOR_REFERENCE_REVIEW_SECONDS="0") as stack:
        url = f"{stack.webhooks}/webhooks/github"
        after = last_notification_id(database)
        ingest.run(url, CLIENTS, WARM_UP, first_pr=1)
        wait_finished(database, after, WARM_UP)
        after = last_notification_id(database)
        load = ingest.run(url, CLIENTS, n, first_pr=1_000_000)
        wait_finished(database, after, n)
        done = completions(read_streams(database, after))
    return Rate(label, len(done), len(done) / (max(done) - load.began), load.other)


def failover_rows() -> list[tuple[str, str, str]]:
    """The PostgreSQL failover half's rows (measure, value, note)."""
    seconds, lost = ha_failover.measure()
    return [("PostgreSQL failover: seconds without service", f"{seconds:.2f}",
             "SIGKILL of the primary to the first accepted delivery; target < 10"),
            ("PostgreSQL failover: acknowledged deliveries lost", str(lost), "target 0")]


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1000)
    n = parser.parse_args().jobs
    began = time.monotonic()
    with one_node() as url:
        classic = measure("classic queues, 1 node", url, "classic", n)
    with three_nodes() as url:
        quorum = measure("quorum queues, 3-node cluster", url, "quorum", n)
    print(f"bench/ha.py --jobs {n}: {os.cpu_count()} CPUs (nproc), load average "
          f"{os.getloadavg()[0]:.1f} at the end, {time.monotonic() - began:.0f}s in all;"
          " every figure below from this one run.")
    print(" ".join(__doc__.split("Method. ", 1)[1].split("\n\n", 1)[0].split()))
    print()
    row("measure", "value", "note")
    row("---", "---", "---")
    for rate in (classic, quorum):
        row(f"Conveyor noop3 on {rate.label}: jobs/s", f"{rate.per_second:.1f}",
            f"{rate.completed} of {n} completed; {rate.other} answers other than 202")
    row("ratio: quorum cluster ÷ classic node", f"{quorum.per_second / classic.per_second:.3f}",
        "jobs/s over jobs/s, same run")
    for measure_name, value, note in failover_rows():
        row(measure_name, value, note)


if __name__ == "__main__":
    main()
