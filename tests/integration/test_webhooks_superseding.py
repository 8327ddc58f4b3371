"""Superseding on the real event store: one live review per pull request, the newest one."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from uuid import UUID

import psycopg
from falcon import testing

from conveyor.aggregates import PullRequest, Status, pull_request_id_for
from conveyor.application import Jobs
from tests.deliveries import Delivery, github_pull_request, gitlab_merge_request
from tests.integration.test_webhooks_ingest import client, post

__all__ = ["client"]  # a fixture shared with the ingest tests


def push(number: int, head: str, action: str = "synchronize") -> Delivery:
    """A signed GitHub delivery saying pull request `number` of acme/api is now at `head`."""
    return github_pull_request(action, number=number, head=head)


def close(number: int, merged: bool) -> Delivery:
    return github_pull_request("closed", number=number, head="0" * 40, merged=merged)


def send(client: testing.TestClient, delivery: Delivery) -> testing.Result:
    return post(client, delivery.platform, delivery.headers, delivery.body)


def log_position(database: str, job_id: str) -> int:
    """Where the job's Enqueued sits in the notification log."""
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT notification_id FROM jobs_events"
            " WHERE originator_id = %s AND originator_version = 1",
            (UUID(job_id),),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_new_head_cancels_the_running_review_of_the_older_one(
    client: testing.TestClient, jobs: Jobs
) -> None:
    first = send(client, push(7, "a" * 40, action="opened")).json["job_id"]

    result = send(client, push(7, "b" * 40))

    assert result.status_code == 202
    second = result.json["job_id"]
    assert result.json["superseded"] == first
    old = jobs.get(UUID(first))
    assert (old.status, old.cancel_reason) == (Status.CANCELLED, "superseded")
    cancelled = list(jobs.repository.event_store.get(old.id))[-1]
    assert cancelled.superseded_by == second  # type: ignore[attr-defined]
    assert jobs.get(UUID(second)).status is Status.PENDING


def test_a_re_delivered_old_push_does_not_revive_its_superseded_review(
    client: testing.TestClient, jobs: Jobs
) -> None:
    old_push = push(8, "a" * 40, action="opened")
    first = send(client, old_push).json["job_id"]
    second = send(client, push(8, "b" * 40)).json["job_id"]

    again = send(client, old_push)

    assert (again.status_code, again.json) == (200, {"status": "duplicate", "job_id": first})
    assert jobs.get(UUID(first)).status is Status.CANCELLED
    assert jobs.get(UUID(second)).status is Status.PENDING


def test_a_push_of_the_current_head_is_a_duplicate(client: testing.TestClient) -> None:
    first = send(client, push(9, "a" * 40, action="opened")).json["job_id"]

    again = send(client, push(9, "a" * 40))

    assert (again.status_code, again.json["job_id"]) == (200, first)


def test_racing_pushes_leave_exactly_one_live_review_the_last_in_the_log(
    client: testing.TestClient, jobs: Jobs, database: str
) -> None:
    for number in range(100, 120):
        deliveries = [push(number, secrets.token_hex(20)) for _ in range(2)]
        barrier = Barrier(2)

        def race(delivery: tuple[dict[str, str], bytes], barrier: Barrier = barrier) -> str:
            barrier.wait()
            result = send(client, delivery)
            assert result.status_code == 202, result.json
            return str(result.json["job_id"])

        with ThreadPoolExecutor(2) as pool:
            ids = list(pool.map(race, deliveries))

        live = [i for i in ids if not jobs.get(UUID(i)).status.is_terminal]
        assert len(live) == 1, ids
        [other] = [i for i in ids if i != live[0]]
        assert log_position(database, live[0]) > log_position(database, other)
        loser = jobs.get(UUID(other))
        assert loser.cancel_reason == "superseded"
        assert list(jobs.repository.event_store.get(loser.id))[-1].superseded_by == live[0]
        pr: PullRequest = jobs.repository.get(
            pull_request_id_for("github", "acme/api", str(number)))
        assert pr.review == live[0]


def test_closing_a_pull_request_cancels_its_running_review(
    client: testing.TestClient, jobs: Jobs
) -> None:
    job_id = send(client, push(10, "a" * 40, action="opened")).json["job_id"]

    result = send(client, close(10, merged=False))

    assert (result.status_code, result.json) == (
        200, {"status": "cancelled", "job_id": job_id, "reason": "closed"})
    job = jobs.get(UUID(job_id))
    assert (job.status, job.cancel_reason) == (Status.CANCELLED, "closed")


def test_merging_a_pull_request_cancels_its_running_review_and_a_second_close_is_ignored(
    client: testing.TestClient, jobs: Jobs
) -> None:
    job_id = send(client, push(11, "a" * 40, action="opened")).json["job_id"]

    merged = send(client, close(11, merged=True))
    again = send(client, close(11, merged=True))

    assert merged.json == {"status": "cancelled", "job_id": job_id, "reason": "merged"}
    assert (again.status_code, again.json["status"]) == (200, "ignored")
    assert jobs.get(UUID(job_id)).cancel_reason == "merged"


def test_a_gitlab_merge_cancels_the_review_its_reopening_started(
    client: testing.TestClient, jobs: Jobs
) -> None:
    job_id = send(client, gitlab_merge_request("reopen", iid=4)).json["job_id"]

    result = send(client, gitlab_merge_request("merge", iid=4))

    assert result.json == {"status": "cancelled", "job_id": job_id, "reason": "merged"}


def test_reopening_a_closed_pull_request_at_the_same_head_starts_a_fresh_review(
    client: testing.TestClient, jobs: Jobs
) -> None:
    first = send(client, push(12, "a" * 40, action="opened")).json["job_id"]
    send(client, close(12, merged=False))
    reopening = push(12, "a" * 40, action="reopened")

    reopened = send(client, reopening)
    again = send(client, reopening)

    assert reopened.status_code == 202 and reopened.json["job_id"] != first
    assert (again.status_code, again.json["job_id"]) == (200, reopened.json["job_id"])
    assert jobs.get(UUID(reopened.json["job_id"])).status is Status.PENDING
