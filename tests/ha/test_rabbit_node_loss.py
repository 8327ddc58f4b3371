"""Losing RabbitMQ nodes one at a time under 500 reviews: quorum queues lose nothing."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from dramatiq.common import dq_name, xq_name
from eventsourcing.application import AggregateNotFoundError

from conveyor.actors.broker import version_queue
from conveyor.aggregates import Job, OutsideEvent, outside_event_id_for
from conveyor.application import Jobs
from conveyor.relay.publisher import RabbitPublisher
from conveyor.settings import Settings
from conveyor.workflows.code_review import code_review
from tests.faults.audit import audit, report
from tests.faults.cluster import Cluster, cluster
from tests.faults.services import deliver
from tests.ha.rabbit_cluster import RabbitCluster, rabbit_cluster
from tests.waiting import wait_until

REVIEWS = 500
# Reviews that must finish while a node is down, to show work goes on without it.
PROGRESS = 40
# Each reference reviewer (two a review) takes this long, so the reviews are still in
# flight when the nodes stop: about a minute of work for the workers' 8 threads.
REVIEW_SECONDS = "0.5"
# The worker that tries each node first.
WORKERS = {0: "worker-a", 1: "worker-b"}


@pytest.fixture
def rabbits() -> Iterator[RabbitCluster]:
    with rabbit_cluster(3) as found:
        yield found


@pytest.fixture
def conveyor_on(settings: Settings, rabbits: RabbitCluster, tmp_path: Path,
                ) -> Iterator[Cluster]:
    """The webhooks app and two workers on the cluster's quorum queues, each process trying
    the nodes in its own order: the workers start on different nodes. The test starts the
    relay and `conveyor events` once it knows which node leads the stage queue."""
    with cluster(Settings(**{**vars(settings), "amqp_url": rabbits.url(0)}), tmp_path,
                 CONVEYOR_QUEUE_TYPE="quorum",
                 CONVEYOR_REFERENCE_REVIEW_SECONDS=REVIEW_SECONDS) as found:
        found.add("webhooks")
        found.add("worker-a", "worker", CONVEYOR_AMQP_URL=rabbits.url(0))
        found.add("worker-b", "worker", CONVEYOR_AMQP_URL=rabbits.url(1))
        found.wait_http("webhooks")
        yield found


def stored_event(jobs: Jobs, event_id: str) -> OutsideEvent | None:
    try:
        found: OutsideEvent = jobs.repository.get(outside_event_id_for(event_id))
    except AggregateNotFoundError:
        return None
    return found


def progress(conveyor_on: Cluster) -> int:
    """How many reviews finish, PROGRESS at least, while the body of a `down` waits."""
    done = conveyor_on.terminal_jobs()
    wait_until(lambda: conveyor_on.terminal_jobs() >= done + PROGRESS, timeout=90, interval=0.5)
    return conveyor_on.terminal_jobs() - done


@pytest.fixture
def jobs(settings: Settings) -> Iterator[Jobs]:
    """The test's reader of the log."""
    app = Jobs(env=settings.eventsourcing_env())
    yield app
    app.close()


def test_losing_the_stage_queues_leader_and_then_another_node_loses_no_review(
    conveyor_on: Cluster, rabbits: RabbitCluster, settings: Settings, jobs: Jobs,
) -> None:
    began = time.monotonic()
    stage_queue = version_queue(settings.queue_name, code_review.name, code_review.version)

    # Given the stage queue, declared by the workers, and the relay and the outside-events
    # consumer connected first to the node that leads it
    wait_until(lambda: stage_queue in rabbits.queues(), timeout=60, interval=0.5)
    first = rabbits.leader(stage_queue)
    at = rabbits.nodes.index(first)
    conveyor_on.add("relay", CONVEYOR_AMQP_URL=rabbits.url(at))
    conveyor_on.add("events", CONVEYOR_AMQP_URL=rabbits.url(at))
    # And 500 reviews accepted through webhook deliveries
    accepted: list[UUID] = []
    for number in range(1, REVIEWS + 1):
        status, body, _ = deliver(conveyor_on, number)
        assert status == 202, (status, body)
        accepted.append(UUID(body["job_id"]))

    # When that node stops, while the reviews are in flight
    in_flight = [REVIEWS - conveyor_on.terminal_jobs()]
    assert in_flight[0] > PROGRESS, f"only {in_flight[0]} reviews in flight"
    with rabbits.down(first) as took:
        during_first = progress(conveyor_on)
        # Then an outside event published through another node reaches the consumer, which
        # has reconnected to a surviving node
        publisher = RabbitPublisher(rabbits.url(at + 1), settings.events_exchange)
        try:
            publisher.publish("ha-event", "ast.task.completed", "k-1", {"ok": True})
        finally:
            publisher.close()
        stored = wait_until(lambda: stored_event(jobs, "ha-event"), timeout=60, interval=0.5)
        assert (stored.key, stored.payload) == ("k-1", {"ok": True})
    # And, once it is back, another node stops: the new leader, unless it moved back
    leader = rabbits.leader(stage_queue)
    second = leader if leader is not first else next(n for n in rabbits.nodes if n is not first)
    in_flight.append(REVIEWS - conveyor_on.terminal_jobs())
    assert in_flight[1] > PROGRESS, f"only {in_flight[1]} reviews in flight"
    with rabbits.down(second):
        during_second = progress(conveyor_on)

    # Then every accepted review completes, each stage's outcome recorded once
    wait_until(lambda: conveyor_on.terminal_jobs() == REVIEWS, timeout=150, interval=0.5)
    found = audit(conveyor_on, jobs, accepted)
    assert found.statuses == Counter({"COMPLETED": REVIEWS})
    assert found.failures == 0
    outcomes = Counter((job_id, e.stage) for job_id in accepted for e in found.events[job_id]
                       if isinstance(e, Job.StageCompleted))
    plan = {job_id: len(jobs.get(job_id).plan) for job_id in accepted}
    assert all(n == 1 for n in outcomes.values())
    assert len(outcomes) == sum(plan.values())
    # And no message was dead-lettered: the history needed none of the broker's spares. The
    # copies still queued when the last job completed (the relay re-sends what a lost node
    # had not confirmed) are acknowledged, as skipped, within the minute.
    wait_until(lambda: rabbits.queues()[stage_queue][1] == 0, timeout=60, interval=1.0)
    queues = rabbits.queues()
    assert {name: queues[name] for name in (stage_queue, dq_name(stage_queue),
                                            xq_name(stage_queue))} == {
        stage_queue: ("quorum", 0), dq_name(stage_queue): ("quorum", 0),
        xq_name(stage_queue): ("quorum", 0)}
    report(
        f"rabbitmq node loss: 3-node cluster, quorum queues; {REVIEWS} reviews accepted;"
        f" with {in_flight[0]} in flight stopped the stage queue's leader, the relay's and the"
        f" events consumer's first node and {WORKERS.get(at, 'no worker')}'s"
        f" ({took:.1f}s to stop;"
        f" {during_first} reviews finished while it was down), restarted it, then with"
        f" {in_flight[1]} in flight stopped"
        f" {'the new leader' if second is leader else 'another node'} ({during_second}"
        f" finished meanwhile); all {REVIEWS} completed, {len(outcomes)} stage outcomes each"
        f" recorded once, 0 failed, 0 dead-lettered; {time.monotonic() - began:.0f}s"
    )
