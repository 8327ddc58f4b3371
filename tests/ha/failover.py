"""The PostgreSQL failover scenario, shared by the ha test and `bench.ha_failover`.

A private primary and a synchronous streaming standby (`tests.ha.pg_cluster`); Conveyor's
processes (webhooks, api, worker, relay, projector, events) on the libpq multi-host URL
naming both with `target_session_attrs=read-write`, RabbitMQ the machine's (private queue
names). One client posts a signed GitHub delivery every `PACE_SECONDS`, each a new
`code_review` job. After `BEFORE_SECONDS`, every process of the primary is killed with
SIGKILL; `DETECT_SECONDS` later (what a failover manager takes to notice) the standby is
promoted. The load goes on until `AFTER_SECONDS` after the first delivery accepted again;
then every acknowledged (2xx) job must finish on the new primary.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import orjson
import pika
import psycopg

from conveyor.bootstrap import load_workflows, worker_queues
from conveyor.migrate import migrate
from conveyor.settings import Settings
from tests.conftest import AMQP_URL, settings_for
from tests.faults.cluster import Cluster, cluster
from tests.faults.services import deliver
from tests.ha.pg_cluster import PgCluster, pg_cluster
from tests.waiting import wait_until

PROCESSES = ("webhooks", "api", "worker", "relay", "projector", "events")
PACE_SECONDS = 0.1
BEFORE_SECONDS = 5.0
DETECT_SECONDS = 2.0
AFTER_SECONDS = 5.0
FINISH_SECONDS = 150.0
DATABASE = "conveyor"
# The workflow module `tests.faults.cluster` gives the processes.
WORKFLOW_MODULE = "tests.faults.effects_workflow"


@dataclass
class Answer:
    """One delivery: when it was sent and answered (monotonic), its status, its job."""

    sent: float
    answered: float
    status: int
    job_id: UUID | None


@dataclass
class Failover:
    """What one failover run saw."""

    killed_at: float = 0.0
    promoted_at: float = 0.0
    answers: list[Answer] = field(default_factory=list)
    finished: int = 0
    lost: list[UUID] = field(default_factory=list)
    # The id of the outside event published to `conveyor events` after the failover.
    outside_event: str = ""

    @property
    def acknowledged(self) -> list[UUID]:
        return [a.job_id for a in self.answers if 200 <= a.status < 300 and a.job_id]

    @property
    def first_after_kill(self) -> Answer | None:
        return next((a for a in self.answers
                     if a.sent >= self.killed_at and 200 <= a.status < 300), None)

    @property
    def seconds_without_service(self) -> float:
        first = self.first_after_kill
        return float("inf") if first is None else first.answered - self.killed_at

    @property
    def during_switch(self) -> Counter[int]:
        """The statuses answered to deliveries sent between the kill and the first 2xx."""
        first = self.first_after_kill
        end = first.sent if first is not None else float("inf")
        return Counter(a.status for a in self.answers if self.killed_at <= a.sent < end)


class Load:
    """One client posting a new delivery every `PACE_SECONDS` until stopped."""

    def __init__(self, processes: Cluster, result: Failover) -> None:
        self.processes = processes
        self.result = result
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="load", daemon=True)

    def _run(self) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            sent = time.monotonic()
            try:
                status, body, _ = deliver(self.processes, number)
            except OSError:
                status, body = 0, None  # no answer at all: not acknowledged
            job = body.get("job_id") if isinstance(body, dict) else None
            self.result.answers.append(
                Answer(sent, time.monotonic(), status, UUID(job) if job else None))
            self.stop.wait(max(0.0, PACE_SECONDS - (time.monotonic() - sent)))


def enqueued(processes: Cluster, job_ids: list[UUID]) -> set[UUID]:
    """The jobs among `job_ids` whose stream the database (the current primary) holds."""
    rows = processes.query("SELECT DISTINCT originator_id FROM jobs_events"
                           " WHERE originator_id = ANY(%s)", (job_ids,))
    return {row[0] for row in rows}


def publish_outside_event(amqp_url: str, exchange: str) -> str:
    """Publish an outside event for `conveyor events` to store; return its id."""
    event_id = f"ha-{uuid.uuid4().hex[:12]}"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        connection.channel().basic_publish(
            exchange, "ast.task.completed",
            orjson.dumps({"id": event_id, "key": "failover", "payload": {}}))
    finally:
        connection.close()
    return event_id


@contextmanager
def private_queues(settings: Settings) -> Iterator[None]:
    """The run's queues and exchanges on the shared RabbitMQ (the stage queues of every
    workflow version with Dramatiq's siblings, the outside events' queue and exchange,
    named after the stage queue), deleted afterwards."""
    queue = settings.queue_name
    workers = dataclasses.replace(settings, workflow_modules=(WORKFLOW_MODULE,))
    stages = worker_queues(workers, load_workflows(workers))
    try:
        yield
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        try:
            channel = connection.channel()
            for name in [*(f"{q}{suffix}" for q in stages for suffix in ("", ".DQ", ".XQ")),
                         f"{queue}.events", f"{queue}.events.dead"]:
                channel.queue_delete(name)
            for name in (f"{queue}.events", f"{queue}.events.dead"):
                channel.exchange_delete(name)
        finally:
            connection.close()


@contextmanager
def failed_over(logs: Path, amqp_url: str = AMQP_URL
                ) -> Iterator[tuple[PgCluster, Cluster, Failover]]:
    """Run the failover under load; yield the servers, the processes (still running, on the
    new primary, every acknowledged job finished or the deadline passed) and what it saw."""
    with pg_cluster() as pg:
        with psycopg.connect(pg.primary.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        migrate(pg.multi_host_url(DATABASE))
        queue = f"conveyor-ha-{uuid.uuid4().hex[:12]}"
        settings = settings_for(pg.multi_host_url(DATABASE), queue, amqp_url)
        with private_queues(settings), \
                cluster(settings, logs, CONVEYOR_EVENTS_QUEUE=f"{queue}.events",
                        CONVEYOR_EVENTS_EXCHANGE=f"{queue}.events") as processes:
            for name in PROCESSES:
                processes.add(name)
            processes.wait_http("webhooks")
            processes.wait_http("api")
            result = Failover()
            load = Load(processes, result)
            load.thread.start()
            try:
                time.sleep(BEFORE_SECONDS)  # the steady load before the failure, by design
                result.killed_at = time.monotonic()
                pg.kill_primary()
                time.sleep(max(0.0, result.killed_at + DETECT_SECONDS - time.monotonic()))
                pg.promote()
                result.promoted_at = time.monotonic()
                wait_until(lambda: result.first_after_kill, timeout=60, interval=0.1)
                result.outside_event = publish_outside_event(amqp_url, f"{queue}.events")
                time.sleep(AFTER_SECONDS)
            finally:
                load.stop.set()
                load.thread.join(30)
            acknowledged = result.acknowledged
            result.lost = sorted(set(acknowledged) - enqueued(processes, acknowledged))

            def finished() -> bool:
                result.finished = processes.count(
                    "SELECT count(DISTINCT originator_id) FROM jobs_events WHERE topic ~"
                    " ':Job\\.(Completed|Failed|Cancelled)$' AND originator_id = ANY(%s)",
                    (acknowledged,))
                return result.finished + len(result.lost) == len(acknowledged)

            # Past the deadline, what is unfinished is reported: finished < acknowledged.
            with suppress(AssertionError):
                wait_until(finished, timeout=FINISH_SECONDS, interval=0.5)
            yield pg, processes, result
