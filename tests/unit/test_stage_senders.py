"""What the in-process sender of `conveyor dev` tells the relay about its queues."""

from __future__ import annotations

from uuid import uuid4

from dramatiq.brokers.stub import StubBroker

from conveyor.actors.broker import stage_message
from conveyor.relay.dispatch import BrokerSender


def test_the_in_process_broker_counts_the_messages_ready_in_its_queues() -> None:
    broker = StubBroker()
    broker.declare_queue("stages")
    BrokerSender(broker).send([stage_message("stages", uuid4(), "work", 1, {}),
                               stage_message("stages", uuid4(), "work", 1, {})])

    assert BrokerSender(broker).ready(["stages", "never"]) == {"stages": 2, "never": 0}
