"""The one place the Dramatiq broker and the `run_stage` actor are configured."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import xq_name
from dramatiq.middleware import CurrentMessage
from eventsourcing.persistence import InterfaceError, OperationalError

from conveyor.actors.observe import report_outcome
from conveyor.actors.stages import LEASE_GRACE_SECONDS, run_stage
from conveyor.amqp import dramatiq_queues
from conveyor.application import Jobs
from conveyor.rate_gate import RateGate
from conveyor.settings import Settings, node_urls

ACTOR_NAME = "run_stage"
log = logging.getLogger(__name__)

# Stage retries are durable events fired by the relay (docs/architecture.md §3.5). Dramatiq's own
# in-memory retry is kept only for an unreachable database, so a short outage
# neither drops a message nor burns a stage attempt.
INFRASTRUCTURE_RETRIES = 20


def _retry_infrastructure_errors(retries: int, error: BaseException) -> bool:
    return retries < INFRASTRUCTURE_RETRIES and isinstance(error, InterfaceError | OperationalError)


class TypedRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, its queues declared with `CONVEYOR_QUEUE_TYPE`'s arguments.

    Dramatiq declares classic queues and keeps new broker classes out of its core; its
    `_build_queue_arguments` hook (a queue's and its delay queue's arguments) and
    `_declare_xq_queue` are all that differ, so its consumer, reconnects and confirms stay.
    """

    def __init__(self, *, queue_type: str, **options: Any) -> None:
        super().__init__(**options)
        self.queue_type = queue_type

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return dramatiq_queues(queue_name, self.queue_type)[queue_name]

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=xq_name(queue_name), durable=True,
            arguments=dramatiq_queues(queue_name, self.queue_type)[xq_name(queue_name)])


def build_broker(settings: Settings, *, in_process: bool = False) -> dramatiq.Broker:
    """RabbitMQ with publisher confirms, on every node of the URL in turn; Dramatiq's
    in-process broker for `conveyor dev`."""
    broker: dramatiq.Broker = (
        StubBroker() if in_process
        else TypedRabbitmqBroker(url=node_urls(settings.amqp_url), confirm_delivery=True,
                                 queue_type=settings.queue_type))
    # `run_stage` reads whether RabbitMQ redelivered its message (conveyor/actors/stages.py).
    broker.add_middleware(CurrentMessage())
    return broker


def version_queue(queue_name: str, workflow: str, version: str) -> str:
    """The queue of one workflow version's stages: only its workers consume it (§3.9)."""
    return f"{queue_name}.{workflow}.v{version}"


def declare_run_stage(
    broker: dramatiq.Broker, queue_name: str, jobs: Callable[[], Jobs], *,
    time_limit: float, lease_grace: float = LEASE_GRACE_SECONDS,
    gate: Callable[[], RateGate] | None = None,
) -> dramatiq.Actor[Any, Any]:
    """Declare `run_stage` on `broker`; `jobs` and `gate` are called lazily, after any fork.

    `time_limit` (seconds) is the longest any registered stage may run; `gate` enforces
    the tenants' rate limits (none without it). A message for a workflow version this
    worker lacks (one sent to the unversioned queue before versions) is forwarded to that
    version's queue, never run here.
    """

    def forward(workflow: str, version: str) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None
        broker.enqueue(message.copy(queue_name=version_queue(queue_name, workflow, version)))

    def run_stage_actor(job_id: str, stage: str, attempt: int) -> None:
        message = CurrentMessage.get_current_message()
        outcome = run_stage(jobs(), UUID(job_id), stage, attempt, lease_grace,
                            gate=None if gate is None else gate(), forward=forward,
                            redelivered=bool(getattr(message, "redelivered", False)))
        log.info("run_stage %s %s #%d: %s", job_id, stage, attempt, outcome)
        report_outcome(str(outcome))

    return dramatiq.Actor(
        run_stage_actor,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=queue_name,
        priority=0,
        options={
            # Dramatiq's time limit interrupts a stage that overruns the longest
            # declared limit; the stage lease (deadline plus grace) backs it up.
            "time_limit": int(1000 * time_limit),
            "retry_when": _retry_infrastructure_errors,
            "min_backoff": 200,
            "max_backoff": 10_000,
        },
    )


def stage_message(queue_name: str, job_id: UUID, stage: str, attempt: int,
                  options: dict[str, Any] | None = None) -> dramatiq.Message[Any]:
    """The message the relay sends: ids only (architecture §3.2) and options (correlation id,
    organisation)."""
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=ACTOR_NAME,
        args=(str(job_id), stage, attempt),
        kwargs={},
        options=dict(options or {}),
    )
