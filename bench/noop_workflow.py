"""A workflow of three no-op stages in a row, for `bench.peers`.

Registered with `CONVEYOR_WORKFLOW_MODULES=bench.noop_workflow` and started by review
deliveries with `CONVEYOR_REVIEW_WORKFLOW=noop3`. Each stage's output says when the relay
built its message (the message's own `message_timestamp`), when a worker thread picked the
message up, and when the handler was entered and left, so the bench splits a stage's time
into hops from the stored events alone. The two message times come from a Dramatiq
middleware this module adds to the worker's broker at a process's first stage (whose
message goes unclocked): Dramatiq's own hook, so nothing inside `conveyor/` is
instrumented for the bench.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
import dramatiq.broker

from conveyor.workflows import StageContext, Workflow

noop3 = Workflow("noop3")
_picked = threading.local()
_clocking = threading.Lock()
_clocked = False


class PickupClock(dramatiq.Middleware):
    """Remembers, per worker thread, when the message being processed was built and taken."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        _picked.times = (message.message_timestamp / 1000, time.time())


def _clock_the_worker() -> None:
    """Add the clock to the worker's broker, once it is the global one.

    The worker imports this module while it builds its broker, before it sets it as the
    global broker, so the clock is added at the first stage a worker process runs.
    """
    global _clocked
    with _clocking:
        if not _clocked and dramatiq.broker.global_broker is not None:
            dramatiq.broker.global_broker.add_middleware(PickupClock())
            _clocked = True


def noop(ctx: StageContext) -> dict[str, Any]:
    """Do nothing; report the message's and the handler's times (None before the clock)."""
    entered = time.time()
    _clock_the_worker()
    published, picked = getattr(_picked, "times", (None, None))
    _picked.times = (None, None)
    return {"published": published, "picked": picked, "entered": entered, "left": time.time()}


for _name in ("first", "second", "third"):
    noop3.stage(_name)(noop)
