"""The module `conveyor worker` hands to Dramatiq: builds the broker and actor from settings."""

from __future__ import annotations

import functools

import dramatiq

from conveyor.actors.broker import build_broker, declare_run_stage
from conveyor.actors.observe import StageObserver, serve_metrics
from conveyor.application import Jobs
from conveyor.bootstrap import build_jobs
from conveyor.settings import Settings

settings = Settings.from_env()
broker = build_broker(settings)
broker.add_middleware(StageObserver())
dramatiq.set_broker(broker)
serve_metrics(settings.worker_metrics_port)


@functools.cache
def jobs() -> Jobs:
    # Built on first use inside each worker process, never before a fork (DESIGN 3.8).
    return build_jobs(settings)


run_stage = declare_run_stage(broker, settings.queue_name, jobs, settings.lease_grace_seconds)
