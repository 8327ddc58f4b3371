"""`conveyor worker` with one worker process: Dramatiq's worker in this process, no master.

Dramatiq's command line forks its worker processes from a master that only watches them,
and a master does not replace a child that died: it exits, and the supervisor starts it
again (docs/architecture.md §12). With one worker process the master is a second
interpreter, 26 MiB resident, that adds nothing, so `CONVEYOR_WORKER_PROCESSES=1` (the
default) runs Dramatiq's `Worker` here instead. It boots and stops as Dramatiq's own worker
process does: SIGTERM (or SIGINT, SIGHUP) stops it taking messages, the stages it holds
finish within the shutdown timeout or their messages go back to RabbitMQ, and it exits 0;
a second signal exits at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import dramatiq

from conveyor import tracing
from conveyor.settings import Settings

log = logging.getLogger(__name__)

# Dramatiq's own `--worker-shutdown-timeout`, in milliseconds.
SHUTDOWN_TIMEOUT_MS = 600_000
# Dramatiq's exit status for a worker killed by a second signal.
RET_KILLED = 1


def run(settings: Settings, queues: list[str]) -> int:
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if stopping.is_set():
            log.warning("second signal: stopping now")
            sys.exit(RET_KILLED)
        log.info("stopping the worker")
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    # The module Dramatiq's command line would import: it builds and sets the broker.
    from conveyor.actors.worker import broker

    broker.emit_after("process_boot")  # starts the stage time limits, as `dramatiq` does
    worker = dramatiq.Worker(broker, queues=set(queues),
                             worker_threads=settings.worker_threads)
    worker.start()
    log.info("worker ready: %d threads on %s", settings.worker_threads, ", ".join(queues))
    while not stopping.wait(1.0):
        pass
    worker.stop(timeout=SHUTDOWN_TIMEOUT_MS)
    broker.close()
    tracing.shutdown()
    return 0
