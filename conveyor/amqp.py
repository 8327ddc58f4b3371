"""RabbitMQ as Conveyor uses it: the node list of `CONVEYOR_AMQP_URL` and the queues' arguments.

Every AMQP user (Dramatiq's broker, the relay's sender, the outside-event publisher and
consumer, the probes) tries the nodes in the order given and, when its connection drops,
connects again to the first that answers (docs/architecture.md §3.10). pika takes a list of
parameters and does this itself; aio-pika connects to one URL, so `connect_first` loops.

With `CONVEYOR_QUEUE_TYPE=quorum` the stage queues and the outside-events queue are quorum
queues: replicated on the cluster's nodes, with a delivery limit, dead-lettering to a queue
of their own. RabbitMQ refuses to redeclare a queue with another type (PRECONDITION_FAILED);
`QueueTypeError` says what to do instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from conveyor.settings import SettingsError, node_urls

if TYPE_CHECKING:
    import pika

# Deliveries of one message a quorum queue allows before it dead-letters it. A message comes
# back when its consumer's connection drops (a worker killed, a node lost) or Dramatiq hands
# back its prefetched ones on a stop; twenty such returns mean a message that kills whatever
# takes it, and the relay, not the broker, owns stage retries.
DELIVERY_LIMIT = 20
# RabbitMQ's reply code for a declaration that contradicts the existing queue.
PRECONDITION_FAILED = 406

Connection = TypeVar("Connection")
log = logging.getLogger(__name__)


def pika_parameters(amqp_url: str, timeout: float | None = None) -> list[pika.URLParameters]:
    """pika's parameters for every node; `BlockingConnection` tries them in order.

    With `timeout`, each node is tried once and given up after that many seconds (probes).
    """
    import pika  # only the processes that talk to RabbitMQ load it (2 MiB)

    found = []
    for url in node_urls(amqp_url):
        parameters = pika.URLParameters(url)
        if timeout is not None:
            parameters.socket_timeout = timeout
            parameters.blocked_connection_timeout = timeout
            parameters.connection_attempts = 1
        found.append(parameters)
    return found


async def connect_first(amqp_url: str, connect: Callable[[str], Awaitable[Connection]],
                        ) -> Connection:
    """The connection of the first node that answers `connect`; the last node's error if none."""
    from aiormq.exceptions import AMQPError

    urls = node_urls(amqp_url)
    for url in urls[:-1]:
        try:
            return await connect(url)
        except (AMQPError, OSError, TimeoutError) as error:
            log.warning("RabbitMQ at %s did not answer (%s); trying the next node",
                        address(url), type(error).__name__)
    return await connect(urls[-1])


def address(url: str) -> str:
    """`host:port` of a node's URL (never its password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}"


def queue_arguments(queue_type: str, dead_letter_exchange: str,
                    dead_letter_routing_key: str | None = None) -> dict[str, Any]:
    """The arguments of a queue that dead-letters to `dead_letter_exchange`."""
    arguments: dict[str, Any] = {"x-dead-letter-exchange": dead_letter_exchange}
    if dead_letter_routing_key is not None:
        arguments["x-dead-letter-routing-key"] = dead_letter_routing_key
    return arguments | typed(queue_type)


def typed(queue_type: str, *, delivery_limit: bool = True) -> dict[str, Any]:
    """The arguments that make a queue of `queue_type`: none for a classic one."""
    if queue_type == "classic":
        return {}
    return {"x-queue-type": "quorum", **({"x-delivery-limit": DELIVERY_LIMIT}
                                         if delivery_limit else {})}


def dramatiq_queues(queue_name: str, queue_type: str) -> dict[str, dict[str, Any]]:
    """A stage queue and Dramatiq's delay and dead-letter queues beside it, with arguments.

    All three take the type: the delay queue holds Dramatiq's retries of a stage that met a
    database outage, the dead-letter queue what a worker gave up on, and neither may vanish
    with a node. Dramatiq's dead letters expire after its `DEAD_MESSAGE_TTL`, which quorum
    queues honour since RabbitMQ 3.10. No `x-max-priority`: quorum queues refuse it, and
    Conveyor orders work in the relay (docs/architecture.md §3.7), not in the broker.
    """
    # Imported here: the web apps' probes use this module and need no Dramatiq (3 MiB).
    from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
    from dramatiq.common import dq_name, xq_name

    dead = queue_arguments(queue_type, "", xq_name(queue_name))
    return {
        queue_name: dead,
        dq_name(queue_name): dead,
        xq_name(queue_name): {"x-message-ttl": DEAD_MESSAGE_TTL,
                              **typed(queue_type, delivery_limit=False)},
    }


def check_stage_queues(amqp_url: str, queue_type: str, queue_names: Sequence[str]) -> None:
    """Declare the stage queues as `queue_type`; a `QueueTypeError` if one exists otherwise."""
    import pika
    import pika.exceptions

    connection = pika.BlockingConnection(pika_parameters(amqp_url))
    try:
        for queue_name in queue_names:
            for name, arguments in dramatiq_queues(queue_name, queue_type).items():
                try:
                    connection.channel().queue_declare(name, durable=True, arguments=arguments)
                except pika.exceptions.ChannelClosedByBroker as error:
                    raise mismatch(name, queue_type, error.reply_code,
                                   error.reply_text) from None
    finally:
        if connection.is_open:
            connection.close()


def mismatch(queue_name: str, queue_type: str, code: int, text: str) -> Exception:
    """A `QueueTypeError` for a refused declaration, or the refusal itself for another cause."""
    if code != PRECONDITION_FAILED:
        return ConnectionError(f"RabbitMQ refused to declare {queue_name!r}: {code} {text}")
    return QueueTypeError(
        f"queue {queue_name!r} exists with other arguments than CONVEYOR_QUEUE_TYPE={queue_type}"
        f" declares ({text}): drain it and delete it (rabbitmqctl delete_queue {queue_name}),"
        " or set CONVEYOR_QUEUE_NAME / CONVEYOR_EVENTS_QUEUE to a new name, or set"
        " CONVEYOR_QUEUE_TYPE to the type it has")


class QueueTypeError(SettingsError):
    """Raised when a queue exists in RabbitMQ with another type than `CONVEYOR_QUEUE_TYPE` asks."""
