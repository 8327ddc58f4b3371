"""Outside events: stored once per id and per set of organisations; old events still load."""

from __future__ import annotations

import uuid

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from conveyor.aggregates import InvalidOutsideEventError, OutsideEvent, outside_event_id_for
from conveyor.aggregates.outside_event import OUTSIDE_EVENT_NAMESPACE
from conveyor.application import Jobs

MAPPER = Jobs(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper


def test_an_unscoped_event_keeps_the_id_events_were_always_stored_under() -> None:
    assert outside_event_id_for("done-1") == uuid.uuid5(OUTSIDE_EVENT_NAMESPACE, "done-1")
    assert OutsideEvent(event_id="done-1", event_type="t", key="k", payload=None,
                        source="amqp").id == outside_event_id_for("done-1")


def test_one_id_sent_for_different_organisations_is_a_different_event_each_time() -> None:
    ids = {outside_event_id_for("done-1", orgs) for orgs in (
        None, ["acme"], ["globex"], ["acme", "globex"])}

    assert len(ids) == 4
    # The set's order does not matter, and neither the id nor an organisation can be
    # shifted into the other to forge a collision.
    assert outside_event_id_for("done-1", ["globex", "acme"]) == outside_event_id_for(
        "done-1", ["acme", "globex"])
    assert outside_event_id_for("b\nx", ["a"]) != outside_event_id_for("x", ["a\nb"])
    event = OutsideEvent(event_id="done-1", event_type="t", key="k", payload=None,
                         source="http", organizations=["acme"])
    assert event.id == outside_event_id_for("done-1", ["acme"])


def test_an_event_for_no_organisation_at_all_is_refused() -> None:
    with pytest.raises(InvalidOutsideEventError):
        OutsideEvent(event_id="e", event_type="t", key="k", payload=None, source="http",
                     organizations=[])


def test_an_event_stored_before_scoped_tokens_loads_as_sent_for_every_organisation() -> None:
    # Given a Received event as version 1 stored it: no class_version, no organizations
    # (nor the traceparent version 3 added)
    (received,) = OutsideEvent(event_id="old", event_type="t", key="k", payload={"n": 1},
                               source="amqp").collect_events()
    stored = MAPPER.to_stored_event(received)
    state = orjson.loads(stored.state)
    assert (state.pop("class_version"), state.pop("organizations"),
            state.pop("traceparent")) == (3, None, None)
    old = StoredEvent(originator_id=stored.originator_id,
                      originator_version=stored.originator_version, topic=stored.topic,
                      state=orjson.dumps(state))

    # When it is read back
    loaded = MAPPER.to_domain_event(old)

    # Then it was sent for every organisation, and the event it was stays whole
    assert loaded.organizations is None
    event = loaded.mutate(None)
    assert (event.event_id, event.payload, event.organizations) == ("old", {"n": 1}, None)
