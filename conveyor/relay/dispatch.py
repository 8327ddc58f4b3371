"""Sending the relay's `run_stage` messages, a batch at a time.

Dramatiq's `RabbitmqBroker(confirm_delivery=True).enqueue` waits for each message's
publisher confirm before it sends the next: one round trip to RabbitMQ per message,
which kept the relay's thread about 80% of its time in `Relay.send` (issue 11).
`ConfirmedSender` publishes a whole batch on one aio-pika channel with publisher
confirms and waits for all the confirms together, so a batch costs about one round trip.

What a worker receives does not change: the body is `dramatiq.Message.encode()`, routed
by the default exchange to the queue the message names, with the properties Dramatiq's
`RabbitmqBroker.enqueue` sets (`delivery_mode=2` and the `broker_priority` option), and
`mandatory` on. One property is added: `message_id`, Dramatiq's own message id, which
aiormq needs to match an unroutable return to its publish (it would make one up). The
queue and its Dramatiq siblings (`.DQ`, `.XQ`) are declared with the arguments the
workers' broker uses (`conveyor.amqp.dramatiq_queues`) once per connection, before the
first message to them. A new connection goes to the first node of the URL that answers.
No Dramatiq middleware is run: the relay's broker has none that hooks `enqueue`.

`send` returns only when every message of the batch is confirmed; a nack, an unroutable
return, a timeout or a lost connection raise `SendError`, and the caller relays the
whole batch again (delivery at least once; `run_stage` is idempotent).

`ready` counts the messages still waiting in some queues, so that the relay does not take
a message merely queued in a backlog for a lost one (docs/architecture.md §4.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Collection, Sequence
from typing import Any, Protocol, cast

import aio_pika
import aiormq
import aiormq.exceptions
import dramatiq
import pika.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq import spec
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker

from conveyor.amqp import PRECONDITION_FAILED, connect_first, dramatiq_queues, mismatch
from conveyor.errors import ConveyorError

__all__ = ["BrokerSender", "ConfirmedSender", "SendError", "StageSender"]

Messages = Sequence[dramatiq.Message[Any]]
# What a publish on a dropped or refused channel raises, besides the AMQP errors.
_FAILURES = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
             OSError, TimeoutError)


class StageSender(Protocol):
    """Sends a batch of `run_stage` messages and returns once the broker holds them all."""

    def send(self, messages: Messages) -> None: ...

    def ready(self, queue_names: Collection[str]) -> dict[str, int] | None:
        """How many messages wait ready in each queue (none in a queue that does not exist);
        None when the broker cannot be asked."""
        ...

    def close(self) -> None: ...


class BrokerSender:
    """Through a Dramatiq broker's own `enqueue`, one message at a time.

    For `conveyor dev`, whose in-process `StubBroker` has no confirms to wait for.
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def send(self, messages: Messages) -> None:
        for message in messages:
            self.broker.enqueue(message)

    def ready(self, queue_names: Collection[str]) -> dict[str, int] | None:
        if isinstance(self.broker, StubBroker):
            queues = self.broker.queues
            return {name: queues[name].qsize() if name in queues else 0 for name in queue_names}
        if isinstance(self.broker, RabbitmqBroker):
            # Declares a missing queue as the workers would: it holds none.
            try:
                return {name: self.broker.get_queue_message_counts(name)[0]
                        for name in queue_names}
            except (pika.exceptions.AMQPError, OSError):
                del self.broker.connection  # as its `enqueue` does: the next use reconnects
                return None
        return None  # no other broker is used by the relay

    def close(self) -> None:
        return None  # the broker belongs to whoever built it


class ConfirmedSender:
    """Publishes each batch to RabbitMQ at once and waits for its confirms together.

    aio-pika runs on an event loop in a thread of its own, so the connection answers
    heartbeats while the relay waits for news; `send` blocks the caller until the
    batch is confirmed or has failed.
    """

    def __init__(self, amqp_url: str, *, timeout: float = 30.0,
                 queue_type: str = "classic") -> None:
        self.amqp_url = amqp_url
        self.queue_type = queue_type
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._declared: set[str] = set()

    def send(self, messages: Messages) -> None:
        if not messages:
            return
        future = asyncio.run_coroutine_threadsafe(self._publish(messages), self._running_loop())
        try:
            future.result(self.timeout)
        except _FAILURES as error:
            future.cancel()
            self._forget_connection()
            raise SendError(f"{len(messages)} messages not confirmed: "
                            f"{type(error).__name__}: {error}") from error

    def ready(self, queue_names: Collection[str]) -> dict[str, int] | None:
        future = asyncio.run_coroutine_threadsafe(self._count(queue_names), self._running_loop())
        try:
            return future.result(self.timeout)
        except _FAILURES:
            future.cancel()
            self._forget_connection()
            return None

    def close(self) -> None:
        if self._loop is None:
            return
        self._forget_connection()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(self.timeout)
        self._loop.close()
        self._loop = self._thread = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="relay-sender", daemon=True)
            self._thread.start()
        return self._loop

    def _forget_connection(self) -> None:
        """Close the connection, if it still answers; the next batch opens a new one."""
        assert self._loop is not None
        with contextlib.suppress(*_FAILURES):  # gone either way
            asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(self.timeout)

    async def _publish(self, messages: Messages) -> None:
        channel = await self._open()
        for queue_name in sorted({m.queue_name for m in messages} - self._declared):
            await declare_dramatiq_queue(channel, queue_name, self.queue_type)
            self._declared.add(queue_name)
        # aiormq's channel under aio-pika's: aio-pika's `Message` would add properties
        # (priority 0, empty headers) that Dramatiq's enqueue does not set. `wait=False`
        # lets the next publish go before this one's frames reach the socket (the confirm
        # is still awaited): about twice the rate of waiting for each.
        underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
        results = await asyncio.gather(*(
            underlay.basic_publish(
                message.encode(), exchange="", routing_key=message.queue_name, mandatory=True,
                properties=spec.Basic.Properties(
                    delivery_mode=2, priority=message.options.get("broker_priority"),
                    message_id=message.message_id),
                wait=False,
            )
            for message in messages
        ), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _count(self, queue_names: Collection[str]) -> dict[str, int]:
        """Passive declares on a channel apart from the publishing one: a missing queue
        closes the channel that asked (404), and the publisher's must stay open."""
        await self._open()
        assert self._connection is not None
        counts: dict[str, int] = {}
        channel: AbstractChannel | None = None
        try:
            for name in sorted(queue_names):
                if channel is None or channel.is_closed:
                    channel = await self._connection.channel(publisher_confirms=False)
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    counts[name] = 0
                else:
                    counts[name] = queue.declaration_result.message_count or 0
        finally:
            if channel is not None and not channel.is_closed:
                await channel.close()
        return counts

    async def _open(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            await self._disconnect()
            self._connection = await connect_first(self.amqp_url, lambda url: aio_pika.connect(
                url, timeout=self.timeout,
                client_properties={"connection_name": "conveyor relay"}))
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True)
        return self._channel

    async def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._declared.clear()
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(*_FAILURES):  # gone either way
                await connection.close()


async def declare_dramatiq_queue(channel: AbstractChannel, queue_name: str,
                                 queue_type: str = "classic") -> None:
    """Declare `queue_name` and its delay and dead-letter queues as the workers' broker does.

    A queue that exists with another type closes the channel: `QueueTypeError` says what
    to do, and the relay stops on it (docs/architecture.md §3.10).
    """
    for name, arguments in dramatiq_queues(queue_name, queue_type).items():
        try:
            await channel.declare_queue(name, durable=True, arguments=arguments)
        except aiormq.exceptions.ChannelPreconditionFailed as error:
            raise mismatch(name, queue_type, PRECONDITION_FAILED, str(error)) from None


class SendError(ConveyorError):
    """Raised when a batch was not confirmed whole (nacked, unroutable, timed out or cut off).

    Some of its messages may have been delivered: the caller sends the whole batch again.
    """
