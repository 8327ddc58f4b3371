"""Steady load during a fault: jobs enqueued directly and, optionally, through webhooks."""

from __future__ import annotations

import threading
from collections import Counter
from types import TracebackType
from uuid import UUID

from conveyor.application import Jobs
from tests.faults.cluster import Cluster
from tests.faults.services import deliver


class Load:
    """A thread enqueuing effects jobs (and webhook deliveries) until stopped.

    `accepted` holds the jobs whose enqueue answered (a 202, or a return from the
    application); every one of them must reach a terminal state.
    """

    def __init__(self, cluster: Cluster, jobs: Jobs, name: str, *, webhooks: bool = False,
                 interval: float = 0.05) -> None:
        self.cluster = cluster
        self.jobs = jobs
        self.name = name
        self.webhooks = webhooks
        self.interval = interval
        self.accepted: list[UUID] = []
        self.delivered: list[UUID] = []
        self.refused: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(120)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            n += 1
            try:
                self.accepted.append(self.jobs.enqueue(
                    "effects", f"{self.name}:{n}", {"seconds": 0.1}).job_id)
            except Exception as error:  # an outage refuses the job; it was never accepted
                self.refused[type(error).__name__] += 1
            if self.webhooks and n % 4 == 0:
                try:
                    status, body, _ = deliver(self.cluster, 1000 + n)
                except OSError as error:  # the webhook process is restarting
                    self.refused[type(error).__name__] += 1
                    continue
                if status == 202:
                    self.delivered.append(UUID(body["job_id"]))
                else:
                    self.refused[f"HTTP {status}"] += 1
