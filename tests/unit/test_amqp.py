"""`CONVEYOR_QUEUE_TYPE`, the node list of `CONVEYOR_AMQP_URL`, and the queues' arguments."""

from __future__ import annotations

import pytest
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker

from conveyor.actors.broker import TypedRabbitmqBroker
from conveyor.amqp import DELIVERY_LIMIT, dramatiq_queues, pika_parameters, queue_arguments
from conveyor.settings import Settings, SettingsError

TWO_NODES = "amqp://guest:guest@a:5672/%2F, amqp://guest:guest@b:5673/%2F"


def test_queues_are_classic_unless_quorum_is_asked_for() -> None:
    assert Settings.from_env({}).queue_type == "classic"
    assert Settings.from_env({"CONVEYOR_QUEUE_TYPE": "Quorum"}).queue_type == "quorum"


def test_an_unknown_queue_type_is_one_line_saying_what_to_set() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"CONVEYOR_QUEUE_TYPE": "stream"})
    assert str(raised.value) == "CONVEYOR_QUEUE_TYPE must be classic or quorum, not 'stream'"


def test_the_amqp_url_may_name_several_nodes_tried_in_the_order_given() -> None:
    settings = Settings.from_env({"CONVEYOR_AMQP_URL": TWO_NODES})

    assert settings.amqp_url == "amqp://guest:guest@a:5672/%2F,amqp://guest:guest@b:5673/%2F"
    assert [(p.host, p.port) for p in pika_parameters(settings.amqp_url)] == [
        ("a", 5672), ("b", 5673)]


def test_a_probe_gives_each_node_one_short_attempt() -> None:
    found = pika_parameters(TWO_NODES, timeout=2.0)
    assert [(p.connection_attempts, p.socket_timeout) for p in found] == [(1, 2.0), (1, 2.0)]


def test_a_node_url_of_another_scheme_is_refused_without_repeating_the_url() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"CONVEYOR_AMQP_URL": "amqp://a:5672,http://user:secret@b"})
    assert "scheme 'http'" in str(raised.value)
    assert "secret" not in str(raised.value)


def test_classic_stage_queues_have_exactly_the_arguments_dramatiq_gives_them() -> None:
    ours = dramatiq_queues("q", "classic")
    theirs = RabbitmqBroker(url="amqp://127.0.0.1:1")

    assert ours == {
        "q": theirs._build_queue_arguments("q"),
        "q.DQ": theirs._build_queue_arguments("q"),
        "q.XQ": {"x-message-ttl": DEAD_MESSAGE_TTL},
    }


def test_quorum_stage_queues_are_typed_limited_and_dead_letter_to_their_xq() -> None:
    assert dramatiq_queues("q", "quorum") == {
        "q": {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q.XQ",
              "x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT},
        "q.DQ": {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q.XQ",
                 "x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT},
        "q.XQ": {"x-message-ttl": DEAD_MESSAGE_TTL, "x-queue-type": "quorum"},
    }


def test_the_workers_broker_declares_what_the_relay_declares() -> None:
    broker = TypedRabbitmqBroker(url=["amqp://127.0.0.1:1"], queue_type="quorum")
    assert broker._build_queue_arguments("q") == dramatiq_queues("q", "quorum")["q"]


def test_the_outside_events_queue_dead_letters_to_its_exchange() -> None:
    assert queue_arguments("classic", "events.dead") == {"x-dead-letter-exchange": "events.dead"}
    assert queue_arguments("quorum", "events.dead") == {
        "x-dead-letter-exchange": "events.dead", "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT}
