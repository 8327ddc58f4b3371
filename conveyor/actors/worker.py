"""The module `conveyor worker` hands to Dramatiq: the broker and actor bootstrap builds."""

from __future__ import annotations

import dramatiq

from conveyor.actors.observe import serve_metrics
from conveyor.bootstrap import build_worker_broker
from conveyor.settings import Settings

settings = Settings.from_env()
# The application is built on first use inside each worker process (docs/architecture.md §9).
broker = build_worker_broker(settings)
dramatiq.set_broker(broker)
serve_metrics(settings.worker_metrics_port)
