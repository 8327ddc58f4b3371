"""The fault schedule's helpers: pick a victim mid-stage, kill it, restart what died."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Sequence

from tests.faults.cluster import Cluster, Process


def lease_holders(cluster: Cluster, workers: Sequence[Process]) -> dict[int, Process]:
    """Dramatiq worker processes holding a stage lease now (so: mid-stage), by pid: the
    children of Dramatiq's master, or the `conveyor worker` that runs its one worker itself."""
    children = {pid: worker for worker in workers if worker.alive()
                for pid in worker.children() or [worker.pid]}
    held = {int(lease[3].rsplit(":", 1)[1]) for lease in cluster.leases()}
    return {pid: worker for pid, worker in children.items() if pid in held}


def kill_mid_stage(cluster: Cluster, workers: Sequence[Process], rng: random.Random,
                   timeout: float = 30.0) -> str:
    """kill -9 a worker that is mid-stage and restart it as a supervisor would; say how."""
    deadline = time.monotonic() + timeout
    while True:
        for worker in workers:
            if not worker.alive():
                worker.start()
        holders = lease_holders(cluster, workers)
        if holders:
            break
        if time.monotonic() > deadline:
            raise AssertionError("no worker took a stage lease in time")
        time.sleep(0.02)
    pid = rng.choice(sorted(holders))
    worker = holders[pid]
    if rng.random() < 0.5:
        # Dramatiq's master does not replace a child killed by SIGKILL: it stops, and
        # its supervisor (here, this test) starts it again.
        how = "child"
        os.kill(pid, signal.SIGKILL)
        assert worker.popen is not None
        try:
            worker.popen.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
    else:
        how = "group"
        worker.kill()
    worker.start()
    return how
