"""Conformance on the real event store: each recorded delivery in, one job each or nothing."""

from __future__ import annotations

from uuid import UUID

import pytest
from falcon import testing

from conveyor.application import Jobs
from tests.deliveries import recorded
from tests.integration.test_webhooks_ingest import client, post, stored_events

__all__ = ["client"]  # the ingest tests' app, with every platform's test secret
pytestmark = pytest.mark.integration  # it talks to the real PostgreSQL too

# Every recorded delivery -> (status, answer) and, for a new job, its trigger's fields
# (repository, pull_request, head_commit, action).
ACCEPTED = 202
OUTCOMES: dict[tuple[str, str], tuple[int, str, tuple[str, str, str | None, str] | None]] = {
    ("github", "ping"): (200, "pong", None),
    ("github", "pull_request.opened"): (ACCEPTED, "accepted", (
        "Codertocat/Hello-World", "2", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "opened")),
    ("github", "pull_request.synchronize"): (ACCEPTED, "accepted", (
        "Codertocat/Hello-World", "2", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "updated")),
    ("github", "pull_request.reopened"): (ACCEPTED, "accepted", (
        "Codertocat/Hello-World", "2", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "reopened")),
    ("github", "pull_request.ready_for_review"): (ACCEPTED, "accepted", (
        "Codertocat/Hello-World", "2", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "ready")),
    # No review was ever requested for it here, so closing it has nothing to cancel.
    ("github", "pull_request.closed"): (200, "ignored", None),
    ("github", "pull_request.edited"): (200, "ignored", None),
    ("github", "issue_comment.created"): (200, "ignored", None),
    ("gitlab", "merge_request.open"): (ACCEPTED, "accepted", (
        "gitlabhq/gitlab-test", "1", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "opened")),
    ("gitlab", "merge_request.reopen"): (ACCEPTED, "accepted", (
        "gitlab-org/hello-world", "1", "c4c79227ed610f1151f05bbc5be33b4f340d39c8", "reopened")),
    ("gitlab", "merge_request.update"): (ACCEPTED, "accepted", (
        "test/woodpecker", "2", "0ab96a10266b95b4b533dcfd98738015fbe70889", "updated")),
    ("gitlab", "merge_request.close"): (200, "ignored", None),
    ("gitlab", "merge_request.merge"): (200, "ignored", None),
    ("gitlab", "note.merge_request"): (200, "ignored", None),
    ("bitbucket", "pullrequest.created"): (ACCEPTED, "accepted", (
        "brydzewski/foo", "1", "507a576e59b3", "opened")),
    ("bitbucket", "pullrequest.updated"): (ACCEPTED, "accepted", (
        "brydzewski/foo", "1", "0704fc5beccc", "updated")),
    ("bitbucket", "pullrequest.fulfilled"): (200, "ignored", None),
    ("bitbucket", "pullrequest.comment_created"): (200, "ignored", None),
    ("azure-repos", "git.pullrequest.created"): (ACCEPTED, "accepted", (
        "Fabrikam/Fabrikam", "1", "4444eeee455ff5aaaaabb66ccccccccc7777cccc", "opened")),
    ("azure-repos", "git.pullrequest.updated"): (200, "ignored", None),
    ("azure-repos", "git.pullrequest.merged"): (200, "ignored", None),
    ("azure-repos", "ms.vss-code.git-pullrequest-comment-event"): (200, "ignored", None),
}


@pytest.mark.parametrize(("platform", "name"), list(OUTCOMES))
def test_every_recorded_delivery_gets_its_expected_outcome_on_the_real_store(
    client: testing.TestClient, jobs: Jobs, database: str, platform: str, name: str
) -> None:
    sent = recorded(platform, name)
    status, answer, fields = OUTCOMES[platform, name]

    result = post(client, platform, sent.headers, sent.body)

    assert (result.status_code, result.json["status"]) == (status, answer)
    if fields is None:
        assert stored_events(database) == 0
        return
    job = jobs.get(UUID(result.json["job_id"]))
    trigger = job.trigger
    assert (trigger["platform"], trigger["repository"], trigger["pull_request"],
            trigger["head_commit"], trigger["action"]) == (platform, *fields)
    assert trigger["delivery_id"] and trigger["received_at"]
    assert result.headers["location"] == f"/workflow-queue/jobs/{job.id}"


def test_a_recorded_gitlab_merge_cancels_the_review_its_reopening_started(
    client: testing.TestClient, jobs: Jobs
) -> None:
    reopen = recorded("gitlab", "merge_request.reopen")
    merge = recorded("gitlab", "merge_request.merge")
    job_id = post(client, "gitlab", reopen.headers, reopen.body).json["job_id"]

    result = post(client, "gitlab", merge.headers, merge.body)

    assert result.json == {"status": "cancelled", "job_id": job_id, "reason": "merged"}
