"""Classic and quorum stage queues, and a list of nodes, on the machine's RabbitMQ."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import threading
import uuid
from typing import Any

import orjson
import pika
import pytest

from conveyor.actors.broker import build_broker, stage_message
from conveyor.amqp import QueueTypeError, check_stage_queues, queue_arguments
from conveyor.outside_events.consumer import OutsideEventConsumer
from conveyor.relay.dispatch import ConfirmedSender
from conveyor.relay.publisher import RabbitPublisher
from conveyor.relay.relay import OUTAGES
from conveyor.settings import Settings
from conveyor.startup import wait_for_rabbitmq
from tests.conftest import AMQP_URL
from tests.e2e.stack import CONVEYOR, free_port, process_env
from tests.integration.test_consumer import consuming
from tests.waiting import wait_until

OTHER = {"classic": "quorum", "quorum": "classic"}


@pytest.fixture
def dead_first() -> str:
    """The machine's RabbitMQ behind a node that refuses every connection."""
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F,{AMQP_URL}"


def redelivery(queue_name: str) -> tuple[bool, Any]:
    """Take the queue's head without acknowledging it, hand it back, and take it again:
    whether it came back marked redelivered, and the delivery count RabbitMQ added."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        method, _, _ = channel.basic_get(queue_name, auto_ack=False)
        assert method is not None
        channel.basic_nack(method.delivery_tag, requeue=True)

        def take() -> tuple[Any, Any] | None:
            again, properties, _ = channel.basic_get(queue_name, auto_ack=True)
            return None if again is None else (again, properties)

        again, properties = wait_until(take)
        return again.redelivered, (properties.headers or {}).get("x-delivery-count")
    finally:
        connection.close()


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_the_relay_and_the_workers_declare_one_queue_of_the_configured_type(
    queue_name: str, queue_type: str,
) -> None:
    # Given the relay's sender, configured with a queue type, sending a stage message
    sender = ConfirmedSender(AMQP_URL, timeout=10, queue_type=queue_type)
    try:
        sender.send([stage_message(queue_name, uuid.uuid4(), "validate", 1)])
    finally:
        sender.close()

    # When the workers' broker declares the same queue with the same setting
    broker = build_broker(Settings(amqp_url=AMQP_URL, queue_type=queue_type))
    try:
        broker.declare_queue(queue_name, ensure=True)
    finally:
        broker.close()

    # Then the declarations agree, and a declaration of the other type is refused
    check_stage_queues(AMQP_URL, queue_type, [queue_name])
    with pytest.raises(QueueTypeError) as raised:
        check_stage_queues(AMQP_URL, OTHER[queue_type], [queue_name])
    assert str(raised.value).startswith(
        f"queue {queue_name!r} exists with other arguments than"
        f" CONVEYOR_QUEUE_TYPE={OTHER[queue_type]} declares (PRECONDITION_FAILED - inequivalent"
        f" arg 'x-queue-type'")
    # And only a quorum queue counts the message's deliveries (its delivery limit's count)
    assert redelivery(queue_name) == (True, 1 if queue_type == "quorum" else None)


def test_a_queue_of_another_type_stops_the_relay_with_one_line_saying_what_to_do(
    settings: Settings,
) -> None:
    # Given the stage queue declared classic
    check_stage_queues(AMQP_URL, "classic", [settings.queue_name])

    # When a relay configured for quorum queues starts
    done = subprocess.run(
        [CONVEYOR, "relay"], capture_output=True, text=True, timeout=60, check=False,
        env=process_env(settings, free_port(), free_port(), CONVEYOR_QUEUE_TYPE="quorum"))

    # Then it stops with one line, naming the queue and what to do
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"conveyor relay: queue {settings.queue_name!r} exists with other"
                           " arguments than CONVEYOR_QUEUE_TYPE=quorum declares"), done.stderr
    assert "Traceback" not in done.stderr


def test_the_relay_and_the_workers_skip_a_node_that_does_not_answer(
    queue_name: str, dead_first: str,
) -> None:
    # Given a URL whose first node refuses connections
    assert wait_for_rabbitmq(dead_first, threading.Event())

    # When the relay's sender and Dramatiq's broker each send a message
    sender = ConfirmedSender(dead_first, timeout=10)
    broker = build_broker(Settings(amqp_url=dead_first))
    try:
        sender.send([stage_message(queue_name, uuid.uuid4(), "validate", 1)])
        broker.enqueue(stage_message(queue_name, uuid.uuid4(), "publish", 1))
        # Then both are on the queue, through the second node
        assert broker.get_queue_message_counts(queue_name)[0] == 2
    finally:
        sender.close()
        broker.close()


def test_outside_events_go_out_and_come_in_past_a_node_that_does_not_answer(
    settings: Settings, dead_first: str,
) -> None:
    # Given the outside-events consumer on a URL whose first node refuses connections
    with consuming(dataclasses.replace(settings, amqp_url=dead_first)) as running:
        # When the relay's publisher publishes an outside event through the same URL
        publisher = RabbitPublisher(dead_first, running.settings.events_exchange)
        try:
            publisher.publish("e-past", "ast.task.completed", "t-1", {"ok": True})
        finally:
            publisher.close()

        # Then the consumer stores it
        stored = wait_until(lambda: running.stored("e-past"), timeout=30)
    assert (stored.key, stored.payload) == ("t-1", {"ok": True})


def test_the_outside_events_queue_takes_the_quorum_type(settings: Settings) -> None:
    # Given the consumer configured for quorum queues
    with consuming(dataclasses.replace(settings, queue_type="quorum")) as running:
        # When an event is published to its exchange
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(running.settings.events_exchange, "ast.task.completed",
                                  orjson.dumps({"id": "e-q", "key": "k", "payload": {}}))
            # Then it is stored, and the queue is one a classic declaration is refused on
            wait_until(lambda: running.stored("e-q"), timeout=30)
            events = running.settings.events_queue
            for queue, classic in ((events, queue_arguments(
                    "classic", f"{running.settings.events_exchange}.dead")),
                                   (f"{events}.dead", {})):
                with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
                    connection.channel().queue_declare(queue, durable=True, arguments=classic)
                assert raised.value.reply_code == 406
                assert "x-queue-type" in raised.value.reply_text
        finally:
            connection.close()



def test_the_relays_sender_refuses_a_version_queue_of_another_type_with_the_same_error(
    queue_name: str,
) -> None:
    # Given a stage queue declared classic
    check_stage_queues(AMQP_URL, "classic", [queue_name])
    # When the relay's sender, configured for quorum queues, first sends to it
    sender = ConfirmedSender(AMQP_URL, timeout=10, queue_type="quorum")
    try:
        with pytest.raises(QueueTypeError) as raised:
            sender.send([stage_message(queue_name, uuid.uuid4(), "validate", 1)])
    finally:
        sender.close()
    # Then the relay stops on the error that says what to do (it is no outage to ride out)
    assert str(raised.value).startswith(f"queue {queue_name!r} exists with other arguments")
    assert not isinstance(raised.value, OUTAGES)


def test_the_outside_events_consumer_refuses_a_queue_of_another_type(settings: Settings) -> None:
    # Given the outside-events queues declared classic by a running consumer
    with consuming(settings) as running:
        # When a consumer configured for quorum queues starts on them
        consumer = OutsideEventConsumer(
            dataclasses.replace(running.settings, queue_type="quorum"), running.jobs)
        with pytest.raises(QueueTypeError) as raised:
            # Bounded: a consumer that took the refusal for an outage would retry forever.
            asyncio.run(asyncio.wait_for(consumer.run(asyncio.Event()), 30))
    # Then it stops, saying which queue
    assert str(raised.value).startswith(
        f"queue '{running.settings.events_queue}.dead' exists with other arguments")
