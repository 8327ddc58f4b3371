"""Publishing outside events (such as `ast.task.requested`) to the `workflow.events` exchange."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import orjson
import pika
import pika.exceptions

from conveyor.amqp import pika_parameters

log = logging.getLogger(__name__)

EXCHANGE = "workflow.events"


class Publisher(Protocol):
    def publish(self, event_id: str, event_type: str, key: str, payload: Any) -> None: ...

    def close(self) -> None: ...


class RabbitPublisher:
    """Publishes with confirms to the durable topic exchange, routing key = event type.

    A dropped connection fails the publish (the relay tries again); the next opens on
    the first node of `amqp_url` that answers.
    """

    def __init__(self, amqp_url: str, exchange: str = EXCHANGE) -> None:
        self.amqp_url = amqp_url
        self.exchange = exchange
        self._channel: Any = None
        self._connection: pika.BlockingConnection | None = None

    def _open(self) -> Any:
        if self._channel is None or self._channel.is_closed:
            self._connection = pika.BlockingConnection(pika_parameters(self.amqp_url))
            channel = self._connection.channel()
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            channel.confirm_delivery()
            self._channel = channel
        return self._channel

    def publish(self, event_id: str, event_type: str, key: str, payload: Any) -> None:
        body = orjson.dumps({"id": event_id, "type": event_type, "key": key, "payload": payload})
        properties = pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=event_id
        )
        try:
            self._open().basic_publish(
                self.exchange, event_type, body, properties=properties, mandatory=True
            )
        except pika.exceptions.UnroutableError:
            # Nobody listens for this type yet; the wait's deadline decides what happens.
            log.warning("outside event %s (%s) was unroutable", event_id, event_type)
        except pika.exceptions.AMQPError:
            self._channel = None
            raise

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            self._connection.close()


class LogPublisher:
    """For `conveyor dev`: there is no broker, so requests are logged for a person to answer."""

    def publish(self, event_id: str, event_type: str, key: str, payload: Any) -> None:
        log.info("outside event requested: %s %s key=%s payload=%s",
                 event_id, event_type, key, orjson.dumps(payload).decode())

    def close(self) -> None:
        return None
