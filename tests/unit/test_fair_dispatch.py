"""The fair queue: weighted round robin across organisations, ageing within one, limits."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from conveyor.aggregates import Job
from conveyor.relay.admission import ended_attempts
from conveyor.relay.fair import AGEING_PER_SECOND, Dispatch, FairQueue, Key, Limits

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def dispatch(org: str, n: int, *, priority: int = 0, at: datetime = T0) -> Dispatch:
    return Dispatch(Key(uuid.uuid5(uuid.NAMESPACE_DNS, f"{org}{n}"), "s", 1), org, priority, at)


def limits(table: dict[str, Limits] | None = None) -> Callable[[str], Limits]:
    return lambda org: (table or {}).get(org, Limits(None, 10))


def test_a_burst_from_one_organisation_does_not_delay_another_that_comes_later() -> None:
    # Given 1,000 attempts of A held, then 10 of B
    queue = FairQueue()
    for n in range(1000):
        queue.hold(dispatch("a", n))
    for n in range(10):
        queue.hold(dispatch("b", n, at=T0 + timedelta(seconds=5)))

    # When 20 are released
    released = queue.release(limits(), window=20)

    # Then they alternate: every one of B's is among them
    assert Counter(d.organization for d in released) == {"a": 10, "b": 10}
    assert [d.organization for d in released[:4]] in (["a", "b"] * 2, ["b", "a"] * 2)


def test_turns_are_weighted_by_priority() -> None:
    # Given plenty held for a tenant of priority 30 and one of priority 10
    queue = FairQueue()
    for n in range(400):
        queue.hold(dispatch("gold", n))
        queue.hold(dispatch("free", n))

    # When 400 are released
    released = queue.release(limits({"gold": Limits(None, 30),
                                     "free": Limits(None, 10)}), window=400)

    # Then gold gets three turns to free's one
    assert Counter(d.organization for d in released) == {"gold": 300, "free": 100}


def test_an_organisation_never_has_more_in_flight_than_its_limit_and_zero_pauses_it() -> None:
    # Given A limited to 3, P paused (0) and B unlimited, each with work held
    queue = FairQueue()
    for n in range(10):
        for org in ("a", "p", "b"):
            queue.hold(dispatch(org, n))
    table = {"a": Limits(3, 10), "p": Limits(0, 10)}

    # When everything that may go is released
    first = queue.release(limits(table), window=None)

    # Then A has 3 in flight, P none (still held), B all 10
    assert Counter(d.organization for d in first) == {"a": 3, "b": 10}
    assert (queue.running("a"), queue.held("a"), queue.held("p")) == (3, 7, 10)

    # And when one of A's ends, exactly one more of A's goes
    queue.end(next(d.key for d in first if d.organization == "a"))
    again = queue.release(limits(table), window=None)
    assert [d.organization for d in again] == ["a"] and queue.running("a") == 3


def test_the_window_bounds_what_is_in_flight_in_total() -> None:
    queue = FairQueue()
    for n in range(100):
        queue.hold(dispatch("a", n))
    assert len(queue.release(limits(), window=8)) == 8
    assert queue.release(limits(), window=8) == []
    assert queue.in_flight == 8


def test_a_raised_job_goes_first_within_its_tenant_and_ageing_lets_the_others_pass() -> None:
    # Given an old attempt of priority 0 and, later, raised ones of priority 50
    queue = FairQueue()
    old = dispatch("a", 0, at=T0)
    queue.hold(old)
    soon = T0 + timedelta(seconds=10)
    queue.hold(dispatch("a", 1, priority=50, at=soon))
    # a raised one held after the old one has aged past 50 points
    late = T0 + timedelta(seconds=50 / AGEING_PER_SECOND + 1)
    queue.hold(dispatch("a", 2, priority=50, at=late))

    # When released one at a time
    order = [queue.release(limits(), window=queue.in_flight + 1)[0]
             for _ in range(3)]

    # Then the raised one held 10 s after the old one goes first, but the old one
    # passes the raised one that came after it had waited 50 points' worth
    assert [d.key for d in order] == [dispatch("a", 1).key, old.key, dispatch("a", 2).key]


def test_an_organisation_back_from_idle_has_banked_no_turns() -> None:
    # Given A served alone for a long time
    queue = FairQueue()
    for n in range(100):
        queue.hold(dispatch("a", n))
    queue.release(limits(), window=100)
    # When B and more of A arrive
    for n in range(100, 120):
        queue.hold(dispatch("a", n))
    for n in range(20):
        queue.hold(dispatch("b", n))
    released = queue.release(limits(), window=120)
    # Then they share the next turns equally: B did not get all of them for A's past
    assert Counter(d.organization for d in released[:10]) == {"a": 5, "b": 5}


def test_ended_work_held_or_in_flight_is_forgotten_once() -> None:
    queue = FairQueue()
    held, sent = dispatch("a", 0), dispatch("a", 1)
    queue.hold(held)
    queue.sent(sent.key, "a")
    assert not queue.hold(held)
    assert queue.end(held.key) and queue.end(sent.key) and not queue.end(sent.key)
    assert (queue.held("a"), queue.running("a")) == (0, 0)
    assert queue.release(limits(), None) == []


def test_outcomes_end_their_attempt_and_job_endings_end_all_of_the_job() -> None:
    job_id = uuid.uuid4()
    common = {"originator_id": job_id, "originator_version": 2, "timestamp": T0}
    paused = Job.Paused(stage="s", attempt=2, event_type="t", key="k", deadline=T0, at=T0,
                        on_timeout="fail", request=None, **common)
    resumed = Job.Resumed(stage="s", event_id="e", payload=None, traceparent=None, **common)
    deferred = Job.StageDeferred(stage="s", attempt=2, resource="github_api", until=T0, at=T0,
                                 **common)
    cancelled = Job.Cancelled(reason="r", by="me", at=T0, superseded_by=None,
                              correlation_id=None, **common)
    assert ended_attempts(paused) == Key(job_id, "s", 2)
    assert ended_attempts(resumed) is None
    # A rate limit's deferral frees the slot: its timer holds the attempt anew when due
    assert ended_attempts(deferred) == Key(job_id, "s", 2)
    assert ended_attempts(cancelled) is True
