"""The baseline of `bench.peers`: a plain Dramatiq chain of three no-op actors.

`dramatiq bench.chain` runs the actors: each sends the next message itself, with
publisher confirms on RabbitMQ as Conveyor's broker has them, and the last appends
`<n> <time>` to BENCH_CHAIN_LOG (one small O_APPEND write, whole even from 16 threads).
Nothing is durable beyond the broker. BENCH_CHAIN_QUEUE names the run's own queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.observe import cpu_seconds, own_cpu_seconds
from bench.stack import AMQP_URL

QUEUE = os.environ.get("BENCH_CHAIN_QUEUE", "bench-chain")
LOG = os.environ.get("BENCH_CHAIN_LOG", os.devnull)

broker = RabbitmqBroker(url=AMQP_URL, confirm_delivery=True)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def chain_first(n: int) -> None:
    chain_second.send(n)


@dramatiq.actor(queue_name=QUEUE)
def chain_second(n: int) -> None:
    chain_third.send(n)


@dramatiq.actor(queue_name=QUEUE)
def chain_third(n: int) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{n} {time.time()}\n".encode())
    finally:
        os.close(fd)


@dataclass
class ChainRun:
    per_second: float
    submits: list[float]
    cpu_ms: dict[str, float]  # CPU per chain: the workers' process tree, the sending client


def _finished(log: Path, count: int, timeout: float = 600) -> dict[int, float]:
    """Chain number to completion time, once `log` holds `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count:
            return {int(n): float(at) for n, at in (line.split() for line in lines)}
        time.sleep(0.05)
    raise TimeoutError(f"{count} chains did not finish within {timeout}s")


def _send(client: RabbitmqBroker, queue: str, n: int) -> None:
    client.enqueue(dramatiq.Message(queue_name=queue, actor_name="chain_first", args=(n,),
                                    kwargs={}, options={}))


def run_chain(n: int, processes: int = 2, threads: int = 8, warm_up: int = 50) -> ChainRun:
    """Send `n` chains back to back from one client; time each send and the whole run."""
    queue = f"bench-chain-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "done"
        workers = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "bench.chain", "--processes", str(processes),
             "--threads", str(threads), "--queues", queue],
            env={**os.environ, "BENCH_CHAIN_QUEUE": queue, "BENCH_CHAIN_LOG": str(log)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = RabbitmqBroker(url=AMQP_URL, confirm_delivery=True)
        try:
            # Warm-up chains (negative numbers) wait for the workers to boot; not counted.
            for i in range(1, warm_up + 1):
                _send(client, queue, -i)
            _finished(log, warm_up)
            submits: list[float] = []
            cpu0, client0 = cpu_seconds({"workers": workers.pid}, ""), own_cpu_seconds()
            began = time.time()
            for i in range(n):
                start = time.perf_counter()
                _send(client, queue, i)
                submits.append(time.perf_counter() - start)
            done = _finished(log, warm_up + n)
            cpu1, client1 = cpu_seconds({"workers": workers.pid}, ""), own_cpu_seconds()
            last = max(at for number, at in done.items() if number >= 0)
            return ChainRun(n / (last - began), submits,
                            {"workers": 1000 * (cpu1["workers"] - cpu0["workers"]) / n,
                             "client": 1000 * (client1 - client0) / n})
        finally:
            workers.terminate()
            workers.wait(timeout=30)
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                client.channel.queue_delete(name)
            client.close()
