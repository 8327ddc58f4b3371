"""gunicorn settings shared by `conveyor webhooks` and `conveyor api`."""

from __future__ import annotations

import os
from typing import Any

from conveyor.settings import Settings

# gunicorn 25.1+ opens a control socket at a path shared by every instance on the host.
control_socket_disable = True
_settings = Settings.from_env()
workers = _settings.web_workers
# gthread, but a request gets a thread only once it has arrived whole (slow clients).
worker_class = "conveyor.http.worker.BufferingThreadWorker"
threads = _settings.web_threads
graceful_timeout = 20
timeout = 30
keepalive = 5
# Applications are built in each worker after the fork, never before (docs/architecture.md §9).
preload_app = False
accesslog = None


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics the others serve."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def worker_exit(server: Any, worker: Any) -> None:
    """Export the spans a worker still holds before it goes (conveyor/tracing.py)."""
    from conveyor import tracing

    tracing.shutdown()
