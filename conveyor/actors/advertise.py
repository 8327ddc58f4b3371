"""The Dramatiq middleware by which a worker advertises the workflow versions it runs.

While the worker runs, a thread refreshes its rows in `workflow_workers` every
`HEARTBEAT_SECONDS`; it withdraws them when the worker shuts down (docs/architecture.md §3.9).
A database away only delays the heartbeat: the worker keeps running its stages. The same
session holds the worker process's presence (§4.2) until its last stage has finished.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import dramatiq
import psycopg

from conveyor.settings import Settings, SettingsError
from conveyor.store.leases import hold_presence
from conveyor.store.workers import HEARTBEAT_SECONDS, WorkerStore

log = logging.getLogger(__name__)


class Advertiser(dramatiq.Middleware):
    """Keeps this worker's {workflow: version} in `workflow_workers`, and its presence,
    while it runs."""

    def __init__(self, settings: Settings, versions: Mapping[str, str],
                 interval: float = HEARTBEAT_SECONDS) -> None:
        # The database URL is read at worker boot: importing the worker module needs none.
        self.settings = settings
        self.versions = dict(versions)
        self.interval = interval
        self.stopping = threading.Event()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.stopping.clear()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="advertise")
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self._call(lambda store: store.withdraw(self.worker_id))

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        # The presence outlasts the stages that finish during the shutdown.
        if self._conn is not None:
            self._conn.close()

    def _beat(self) -> None:
        # One session for the worker's life: it also holds the presence that keeps a
        # redelivered copy from taking over this process's running stages (docs §4.2).
        while not self.stopping.is_set():
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.settings.session_url(), autocommit=True,
                                                 connect_timeout=5)
                    if not hold_presence(self._conn):
                        log.warning("another session holds this worker's presence")
                WorkerStore(self._conn).advertise(self.worker_id, self.versions)
            except (psycopg.Error, SettingsError) as error:
                log.warning("cannot advertise workflow versions: %s", error)
                if self._conn is not None:
                    self._conn.close()
            self.stopping.wait(self.interval)

    def _call(self, action: Any) -> None:
        try:
            with psycopg.connect(self.settings.session_url(), connect_timeout=5) as conn:
                action(WorkerStore(conn))
        except (psycopg.Error, SettingsError) as error:
            log.warning("cannot advertise workflow versions: %s", error)
