"""gunicorn settings shared by `conveyor webhooks` and `conveyor api`."""

from __future__ import annotations

import os

# gunicorn 25.1+ opens a control socket at a path shared by every instance on the host.
control_socket_disable = True
workers = int(os.environ.get("CONVEYOR_WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("CONVEYOR_WEB_THREADS", "8"))
graceful_timeout = 20
timeout = 30
keepalive = 5
# Applications are built in each worker after the fork, never before (DESIGN 3.8).
preload_app = False
accesslog = None
