"""A private RabbitMQ cluster: three nodes of tests/servers.py sharing an Erlang cookie.

Each node has its own folder, AMQP port and distribution port, registered with the
machine's epmd under its own node name; the second and third join the first with
`rabbitmqctl join_cluster`. A quorum queue declared once all three are up has a member
on each, so it keeps its quorum with any one node down.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from tests.servers import RABBITMQ_BINARIES, START_SECONDS, PrivateRabbitMQ, rabbitmq_node
from tests.waiting import wait_until


@dataclass
class RabbitCluster:
    """The cluster's nodes, in the order they joined."""

    nodes: list[PrivateRabbitMQ]

    def url(self, first: int = 0) -> str:
        """`CONVEYOR_AMQP_URL` naming every node, starting with node `first`."""
        first %= len(self.nodes)
        order = self.nodes[first:] + self.nodes[:first]
        return ",".join(node.url for node in order)

    def ctl(self, *args: str) -> str:
        """`rabbitmqctl`'s output from the first node that is up and answers."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            done = subprocess.run(
                [str(RABBITMQ_BINARIES / "rabbitmqctl"), "-n", node.node, *args],
                env=node.env, capture_output=True, text=True, timeout=START_SECONDS, check=False)
            if done.returncode == 0:
                return done.stdout
        raise AssertionError(f"no node answered rabbitmqctl {' '.join(args)}")

    def query(self, *args: str) -> list[list[str]]:
        """A `rabbitmqctl` listing, split into rows of columns."""
        found = self.ctl("--quiet", "--no-table-headers", *args)
        return [line.split("\t") for line in found.splitlines() if line.strip()]

    def leader(self, queue_name: str) -> PrivateRabbitMQ:
        """The node that leads the quorum queue `queue_name`."""
        leaders = {row[0]: row[1] for row in self.query("list_queues", "name", "leader")}
        return next(node for node in self.nodes if node.node == leaders[queue_name])

    def queues(self) -> dict[str, tuple[str, int]]:
        """Every queue's type and ready messages."""
        return {row[0]: (row[1], int(row[2]))
                for row in self.query("list_queues", "name", "type", "messages_ready")}

    def running_nodes(self) -> int:
        """How many nodes the cluster sees running."""
        status = json.loads(self.ctl("cluster_status", "--formatter", "json"))
        return len(status["running_nodes"])

    @contextmanager
    def down(self, node: PrivateRabbitMQ) -> Iterator[float]:
        """`node` stopped for the body (its process exits); started again, and back in the
        cluster, whatever happens. Yields the seconds the stop took."""
        began = time.monotonic()
        node.stop()
        try:
            yield time.monotonic() - began
        finally:
            node.start()
            node.ctl("await_startup")


@contextmanager
def rabbit_cluster(size: int = 3) -> Iterator[RabbitCluster]:
    """`size` nodes started and clustered; stopped and their folders deleted afterwards."""
    nodes = [rabbitmq_node() for _ in range(size)]
    cookie = uuid.uuid4().hex
    for node in nodes:
        # Erlang reads the cookie from HOME, which is the node's folder; it must be private.
        path = node.folder / ".erlang.cookie"
        path.write_text(cookie)
        path.chmod(0o400)
    try:
        # Booting is mostly waiting on Erlang; three at once take about as long as one.
        with ThreadPoolExecutor(size) as pool:
            list(pool.map(PrivateRabbitMQ.start, nodes))
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", nodes[0].node)
            node.ctl("start_app")
        found = RabbitCluster(nodes)
        wait_until(lambda: found.running_nodes() == size, timeout=START_SECONDS,
                   interval=0.5)
        yield found
    finally:
        for node in reversed(nodes):
            node.stop()
        for node in nodes:
            shutil.rmtree(node.folder, ignore_errors=True)
