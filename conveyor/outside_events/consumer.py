"""`conveyor events`: the AMQP door for outside events, an aio-pika consumer.

It consumes a durable queue bound to the `workflow.events` topic exchange (routing key
= event type), acknowledges a message only after its event is stored, keeps at most
`prefetch` unacknowledged, and dead-letters what can never be parsed. The queue and its
dead-letter queue take `CONVEYOR_QUEUE_TYPE`. When the connection drops it connects again
to the first node of `CONVEYOR_AMQP_URL` that answers and declares everything again:
aio-pika's `connect_robust` would only ever retry the node it lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from conveyor.aggregates import InvalidOutsideEventError
from conveyor.amqp import PRECONDITION_FAILED, connect_first, mismatch, queue_arguments, typed
from conveyor.application import Jobs
from conveyor.outside_events.parse import parse_outside_event
from conveyor.settings import Settings
from conveyor.tracing import valid_traceparent

log = logging.getLogger(__name__)

# A storage failure (the database down) is retried after this pause, so the
# message is neither lost nor redelivered in a hot loop.
STORE_RETRY_SECONDS = 1.0
RECONNECT_SECONDS = 1.0
# What a lost node or connection raises (a refused queue type is not among them).
LOST = (OSError, TimeoutError, aiormq.exceptions.AMQPError,
        aiormq.exceptions.ChannelInvalidStateError)


class OutsideEventConsumer:
    """Stores each outside event from RabbitMQ once, then acknowledges it."""

    def __init__(self, settings: Settings, jobs: Jobs) -> None:
        self.settings = settings
        self.jobs = jobs
        self.stored = 0
        self.dead_lettered = 0
        self.consuming = asyncio.Event()

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event = parse_outside_event(message.body, default_type=message.routing_key)
        except InvalidOutsideEventError as error:
            log.warning("dead-lettering unparsable outside event: %s", error)
            await message.reject(requeue=False)
            self.dead_lettered += 1
            return
        while True:
            try:
                await asyncio.to_thread(
                    self.jobs.record_outside_event, event.event_id, event.event_type,
                    event.key, event.payload, "amqp", message.correlation_id,
                    # The sender's trace, in the message header OpenTelemetry's AMQP
                    # instrumentations use (W3C's name), for the wait's span to link to.
                    traceparent=valid_traceparent(message.headers.get("traceparent")),
                )
                break
            except Exception:
                log.exception("could not store outside event %s; retrying", event.event_id)
                await asyncio.sleep(STORE_RETRY_SECONDS)
        await message.ack()
        self.stored += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, on one node after another as connections drop."""
        while not stop.is_set():
            try:
                await self._consume(stop)
            except LOST as error:
                self.consuming.clear()
                log.warning("outside events: RabbitMQ connection lost (%s: %s); reconnecting",
                            type(error).__name__, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RECONNECT_SECONDS)

    async def _consume(self, stop: asyncio.Event) -> None:
        settings = self.settings
        connection = await connect_first(settings.amqp_url, aio_pika.connect)
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=settings.events_prefetch)
            exchange = await channel.declare_exchange(
                settings.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            dead_exchange = await channel.declare_exchange(
                f"{settings.events_exchange}.dead", aio_pika.ExchangeType.FANOUT, durable=True
            )
            dead_queue = await self._declare(channel, f"{settings.events_queue}.dead",
                                             typed(settings.queue_type, delivery_limit=False))
            await dead_queue.bind(dead_exchange)
            queue = await self._declare(channel, settings.events_queue,
                                        queue_arguments(settings.queue_type, dead_exchange.name))
            for binding in settings.events_bindings:
                await queue.bind(exchange, routing_key=binding)
            tag = await queue.consume(self.handle)
            self.consuming.set()
            log.info("consuming outside events from %s", settings.events_queue)
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait([stopped, asyncio.ensure_future(lost.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            if not stopped.done():
                stopped.cancel()
                raise ConnectionError("the connection closed")
            # Stop taking new messages; unacknowledged ones go back to the queue.
            await queue.cancel(tag)

    async def _declare(self, channel: AbstractChannel, name: str,
                       arguments: dict[str, Any]) -> AbstractQueue:
        try:
            return await channel.declare_queue(name, durable=True, arguments=arguments)
        except aiormq.exceptions.ChannelPreconditionFailed as error:
            raise mismatch(name, self.settings.queue_type, PRECONDITION_FAILED,
                           str(error)) from None


def run_consumer(settings: Settings, jobs: Jobs, stop: asyncio.Event | None = None) -> None:
    """Run the consumer until `stop` is set (SIGTERM sets it under `conveyor events`)."""

    async def main() -> None:
        done = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, done.set)
        await OutsideEventConsumer(settings, jobs).run(done)

    asyncio.run(main())
