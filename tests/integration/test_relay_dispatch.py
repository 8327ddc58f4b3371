"""The relay's batch sender on the real RabbitMQ: what Dramatiq's workers expect, confirmed."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dramatiq
import pika
import psycopg
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from conveyor.actors.broker import stage_message, version_queue
from conveyor.aggregates import Job, Status
from conveyor.application import Jobs
from conveyor.bootstrap import build_relay, build_worker_broker
from conveyor.relay.dispatch import ConfirmedSender, SendError
from conveyor.relay.relay import OUTAGES
from conveyor.settings import Settings
from tests.conftest import AMQP_URL
from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.servers import PrivateRabbitMQ


@pytest.fixture
def sender() -> Iterator[ConfirmedSender]:
    sender = ConfirmedSender(AMQP_URL, timeout=10)
    yield sender
    sender.close()


def take_all(queue_name: str) -> list[tuple[Any, bytes]]:
    """Every message waiting on `queue_name`: its properties and body, in queue order."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        taken = []
        while True:
            method, properties, body = channel.basic_get(queue_name, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, body))
    finally:
        connection.close()


def delete_queue(queue_name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_delete(queue_name)
    finally:
        connection.close()


def test_a_sent_batch_is_on_the_queue_exactly_as_dramatiq_would_have_put_it(
    sender: ConfirmedSender, queue_name: str
) -> None:
    # Given messages with and without the correlation id option
    messages = [stage_message(queue_name, uuid.uuid4(), "validate", 1),
                stage_message(queue_name, uuid.uuid4(), "publish", 2, {"correlation_id": "c-7"})]
    broker = RabbitmqBroker(url=AMQP_URL, confirm_delivery=True)
    try:
        # When Dramatiq enqueues them, and then the sender sends them as one batch
        for message in messages:
            broker.enqueue(message)
        sender.send(messages)
    finally:
        broker.close()

    # Then each message's bytes and properties are the same both ways
    by_dramatiq, by_sender = (taken := take_all(queue_name))[:2], taken[2:]
    assert len(by_sender) == 2
    for (theirs, their_body), (ours, our_body) in zip(by_dramatiq, by_sender, strict=True):
        assert our_body == their_body
        assert (ours.delivery_mode, ours.priority) == (theirs.delivery_mode, theirs.priority) == (
            2, None)
        assert (ours.headers, ours.content_type, ours.expiration) == (None, None, None)
        assert ours.message_id == dramatiq.Message.decode(our_body).message_id
    assert dramatiq.Message.decode(by_sender[1][1]).options == {"correlation_id": "c-7"}


def test_a_dramatiq_worker_consumes_what_the_sender_declared_and_sent(
    sender: ConfirmedSender, queue_name: str
) -> None:
    # Given a batch sent to a queue nobody declared yet (the sender declares it)
    sent = [stage_message(queue_name, uuid.uuid4(), f"s{i}", 1) for i in range(50)]
    sender.send(sent)

    # When a Dramatiq worker declares the same queue (the same arguments, or RabbitMQ
    # refuses it) and consumes it
    received: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    broker = RabbitmqBroker(url=AMQP_URL, confirm_delivery=True)

    def run_stage(job_id: str, stage: str, attempt: int) -> None:
        with lock:
            received.append((job_id, stage, attempt))

    dramatiq.Actor(run_stage, broker=broker, actor_name="run_stage", queue_name=queue_name,
                   priority=0, options={})
    worker = dramatiq.Worker(broker, queues={queue_name}, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        # Then every message of the batch runs
        wait_until(lambda: len(received) == len(sent), timeout=10)
    finally:
        worker.stop()
        broker.close()
    assert sorted(received) == sorted(tuple(m.args) for m in sent)


def test_an_unroutable_batch_raises_and_the_next_batch_declares_the_queue_again(
    sender: ConfirmedSender, queue_name: str
) -> None:
    # Given a sender that declared its queue, which was then deleted behind its back
    sender.send([stage_message(queue_name, uuid.uuid4(), "validate", 1)])
    delete_queue(queue_name)

    # When it sends a batch, the broker returns it unrouted: the batch is not confirmed
    with pytest.raises(SendError):
        sender.send([stage_message(queue_name, uuid.uuid4(), "validate", 1) for _ in range(3)])

    # Then the batch sent again declares the queue afresh and lands whole
    again = [stage_message(queue_name, uuid.uuid4(), "validate", 1) for _ in range(3)]
    sender.send(again)
    assert [body for _, body in take_all(queue_name)] == [m.encode() for m in again]


def trigger(n: int) -> dict[str, str]:
    return {"platform": "github", "repository": "acme/api", "pull_request": str(n),
            "head_commit": f"sha{n}", "base_branch": "main"}


def test_the_relay_built_for_production_sends_each_batch_at_once_and_jobs_complete(
    settings: Settings, jobs: Jobs
) -> None:
    # Given the relay `conveyor relay` builds, and a Dramatiq worker on its queue
    job_ids = [jobs.enqueue("code_review", f"k{n}", trigger(n)).job_id for n in range(5)]
    broker = build_worker_broker(settings, lambda: jobs)
    worker = dramatiq.Worker(broker, worker_threads=2,
                             worker_timeout=100)
    relay = build_relay(settings, jobs)
    assert isinstance(relay.sender, ConfirmedSender)
    worker.start()
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        # When it relays, Then every job runs each of its stages once, to the end
        wait_until(lambda: all(jobs.get(j).status is Status.COMPLETED for j in job_ids))
    finally:
        relay.stop()
        thread.join(5)
        relay.close()
        worker.stop()
        broker.close()
    assert relay.sent == 5 * 5
    for job_id in job_ids:
        completed = [e.stage for e in jobs.repository.event_store.get(job_id)
                     if isinstance(e, Job.StageCompleted)]
        assert len(completed) == len(set(completed)) == 5


def test_a_batch_the_broker_did_not_confirm_stays_in_flight_and_is_sent_again(
    settings: Settings, jobs: Jobs, private_rabbitmq: PrivateRabbitMQ
) -> None:
    # Given three jobs in the log and a relay sending to a RabbitMQ that is down
    for n in range(3):
        jobs.enqueue("code_review", f"k{n}", trigger(n))
    relay = build_relay(dataclasses.replace(settings, amqp_url=private_rabbitmq.url), jobs)
    assert settings.database_url
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            with private_rabbitmq.stopped():
                # When it relays the batch, the send fails after the batch is recorded,
                # its three first stages in flight (docs/architecture.md §3.3)
                with pytest.raises(OUTAGES):
                    relay.relay_batch(conn)
                assert relay.sent == 0
                assert conn.execute("SELECT count(sent_at) FROM relay_dispatches"
                                    ).fetchone() == (3,)

            # Then, RabbitMQ back, the relay sends its in-flight stages again
            relay.release_held(conn)
        assert relay.position() == jobs.recorder.max_notification_id()
        assert relay.sent == 3
        connection = pika.BlockingConnection(pika.URLParameters(private_rabbitmq.url))
        try:
            # (on code_review's version queue, docs/architecture.md §3.9)
            queue = version_queue(settings.queue_name, "code_review",
                                  jobs.workflows["code_review"].version)
            declared = connection.channel().queue_declare(queue, passive=True)
            assert declared.method.message_count == 3
            connection.channel().queue_delete(queue)
        finally:
            connection.close()
    finally:
        relay.close()
