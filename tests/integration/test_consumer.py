"""The AMQP door for outside events: `conveyor events` against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pika
import pytest

from conveyor.aggregates import OutsideEvent, outside_event_id_for
from conveyor.amqp import pika_parameters
from conveyor.application import Jobs
from conveyor.outside_events.consumer import OutsideEventConsumer
from conveyor.settings import Settings
from tests.servers import PrivateRabbitMQ
from tests.waiting import wait_until


@dataclass
class Running:
    consumer: OutsideEventConsumer
    settings: Settings
    jobs: Jobs

    def publish(self, body: bytes, routing_key: str = "ast.task.completed") -> None:
        connection = pika.BlockingConnection(pika_parameters(self.settings.amqp_url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(self.settings.events_exchange, routing_key, body,
                                  properties=pika.BasicProperties(delivery_mode=2),
                                  mandatory=True)
        finally:
            connection.close()

    def stored(self, event_id: str) -> OutsideEvent | None:
        try:
            event: OutsideEvent = self.jobs.repository.get(outside_event_id_for(event_id))
        except Exception:
            return None
        return event

    def queue_depth(self, queue: str) -> int:
        connection = pika.BlockingConnection(pika_parameters(self.settings.amqp_url))
        try:
            return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
        finally:
            connection.close()


@contextmanager
def consuming(settings: Settings) -> Iterator[Running]:
    suffix = uuid.uuid4().hex[:10]
    settings = dataclasses.replace(
        settings, events_exchange=f"test.events.{suffix}", events_queue=f"conveyor-test-{suffix}"
    )
    jobs = Jobs(env=settings.eventsourcing_env())
    consumer = OutsideEventConsumer(settings, jobs)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(consumer.run(stop),))
    thread.start()
    try:
        wait_until(lambda: consumer.consuming.is_set() or not thread.is_alive(), timeout=20)
        assert thread.is_alive(), "the consumer did not start"
        yield Running(consumer, settings, jobs)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()
        jobs.close()
        connection = pika.BlockingConnection(pika_parameters(settings.amqp_url))
        channel = connection.channel()
        for queue in (settings.events_queue, f"{settings.events_queue}.dead"):
            channel.queue_delete(queue)
        for exchange in (settings.events_exchange, f"{settings.events_exchange}.dead"):
            channel.exchange_delete(exchange)
        connection.close()


@pytest.fixture
def running(settings: Settings) -> Iterator[Running]:
    with consuming(settings) as found:
        yield found


@pytest.fixture
def running_privately(settings: Settings, private_rabbitmq: PrivateRabbitMQ) -> Iterator[Running]:
    """A consumer on a private node, whose connections a test may all close."""
    with consuming(dataclasses.replace(settings, amqp_url=private_rabbitmq.url)) as found:
        yield found


def event(event_id: str, **fields: Any) -> bytes:
    return orjson.dumps({"id": event_id, "key": "t-91", "payload": {"ok": True}, **fields})


def test_a_published_event_is_stored_once_and_acknowledged(running: Running) -> None:
    running.publish(event("e-1"))
    running.publish(event("e-1"))

    stored = wait_until(lambda: running.stored("e-1"))
    wait_until(lambda: running.consumer.stored == 2)
    assert (stored.event_type, stored.key, stored.payload) == ("ast.task.completed", "t-91",
                                                               {"ok": True})
    assert running.queue_depth(running.settings.events_queue) == 0


def test_a_message_that_can_never_be_parsed_is_dead_lettered_not_redelivered(
    running: Running,
) -> None:
    running.publish(b"{not json")
    running.publish(orjson.dumps({"id": "no-key"}))

    wait_until(lambda: running.queue_depth(f"{running.settings.events_queue}.dead") == 2)
    assert running.consumer.dead_lettered == 2
    assert running.queue_depth(running.settings.events_queue) == 0


def test_the_consumer_survives_the_broker_closing_every_connection(
    running_privately: Running, private_rabbitmq: PrivateRabbitMQ,
) -> None:
    # Closing every connection of the machine's broker would cut every other test run's.
    private_rabbitmq.ctl("close_all_connections", "test: broker restart")
    # Published while the consumer is disconnected, or reconnecting.
    running_privately.publish(event("e-after"))

    wait_until(lambda: running_privately.stored("e-after"), timeout=60)
