"""Every kind of delivery: whether it starts a review, and the trigger it becomes."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from conveyor.http.webhooks.app import PLATFORMS
from conveyor.http.webhooks.platform import lower_headers
from conveyor.http.webhooks.trigger import Closing, Ignored, Outcome, Pong, Trigger
from conveyor.settings import Settings
from tests.deliveries import (
    BUILDERS,
    Delivery,
    azure_comment,
    bitbucket_comment,
    github_comment,
    github_pull_request,
    gitlab_note,
)

RECEIVED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NO_COMMAND = "the comment does not contain the review command"
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"

# Every kind of delivery -> the trigger's action, or the outcome's kind and reason.
EXPECTED: dict[tuple[str, str], str | tuple[type[Outcome], str | None]] = {
    ("github", "ping"): (Pong, None),
    ("github", "pull_request.opened"): "opened",
    ("github", "pull_request.synchronize"): "updated",
    ("github", "pull_request.reopened"): "reopened",
    ("github", "pull_request.ready_for_review"): "ready",
    ("github", "pull_request.closed"): (Closing, "closed"),
    ("github", "pull_request.edited"): (
        Ignored, "pull_request action 'edited' does not start a review"),
    ("github", "issue_comment.created"): (Ignored, NO_COMMAND),
    ("gitlab", "merge_request.open"): "opened",
    ("gitlab", "merge_request.reopen"): "reopened",
    ("gitlab", "merge_request.update"): "updated",
    ("gitlab", "merge_request.close"): (Closing, "closed"),
    ("gitlab", "merge_request.merge"): (Closing, "merged"),
    ("gitlab", "note.merge_request"): (Ignored, NO_COMMAND),
    ("bitbucket", "pullrequest.created"): "opened",
    ("bitbucket", "pullrequest.updated"): "updated",
    ("bitbucket", "pullrequest.fulfilled"): (Closing, "merged"),
    ("bitbucket", "pullrequest.comment_created"): (Ignored, NO_COMMAND),
    ("azure-repos", "git.pullrequest.created"): "opened",
    # Like the recorded sample, this update is the pull request being completed, not a push.
    ("azure-repos", "git.pullrequest.updated"): (Closing, "merged"),
    ("azure-repos", "git.pullrequest.merged"): (Closing, "merged"),
    ("azure-repos", "ms.vss-code.git-pullrequest-comment-event"): (Ignored, NO_COMMAND),
}


def parse(delivery: Delivery, settings: Settings) -> Outcome:
    return PLATFORMS[delivery.platform].parse(
        lower_headers(delivery.headers), delivery.body, settings)


def reason(outcome: Outcome) -> str | None:
    return getattr(outcome, "reason", None)


@pytest.mark.parametrize(("platform", "name"), list(EXPECTED))
def test_every_kind_of_delivery_has_the_expected_outcome(
    delivery, secrets, platform, name
) -> None:
    sent = delivery(platform, name)

    outcome = parse(sent, secrets)

    expected = EXPECTED[platform, name]
    if isinstance(expected, str):
        assert isinstance(outcome, Trigger)
        assert (outcome.action, outcome.platform, outcome.repository) == (
            expected, platform, "acme/api")
        trigger = outcome.as_dict(RECEIVED)
        assert json.loads(json.dumps(trigger)) == trigger
        assert trigger["received_at"] == "2025-03-01T12:00:00+00:00"
    else:
        assert (type(outcome), reason(outcome)) == expected


def test_every_kind_of_delivery_has_an_expected_outcome() -> None:
    assert set(EXPECTED) == set(BUILDERS)


def test_a_github_pull_request_becomes_the_full_normalised_trigger(secrets) -> None:
    sent = github_pull_request("opened", repository="Codertocat/Hello-World", number=2,
                               head=HEAD, base="master", sender="Codertocat")

    outcome = parse(sent, secrets)

    assert isinstance(outcome, Trigger)
    assert outcome.as_dict(RECEIVED) == {
        "platform": "github",
        "repository": "Codertocat/Hello-World",
        "pull_request": "2",
        "head_commit": HEAD,
        "base_branch": "master",
        "action": "opened",
        "sender": "Codertocat",
        "delivery_id": sent.headers["X-GitHub-Delivery"],
        "received_at": "2025-03-01T12:00:00+00:00",
        "url": "https://github.com/Codertocat/Hello-World/pull/2",
    }


@pytest.mark.parametrize(
    ("sent", "key", "url"),
    [
        (
            github_comment("please TRIGGER it", repository="abc/def", number=2,
                           comment_id=751955664),
            "github:abc/def:2::751955664",
            "https://github.com/abc/def/pull/2",
        ),
        (
            gitlab_note("trigger a review", repository="gitlab-org/gitlab-test", iid=1,
                        head=HEAD, note_id=1244),
            f"gitlab:gitlab-org/gitlab-test:1:{HEAD}:1244",
            "https://gitlab.example.com/gitlab-org/gitlab-test/-/merge_requests/1",
        ),
        (
            bitbucket_comment("a trigger comment", repository="team/repo", number=1,
                              head="b9437f32dddd", comment_id=311512047),
            "bitbucket:team/repo:1:b9437f32dddd:311512047",
            "https://bitbucket.org/team/repo/pull-requests/1",
        ),
    ],
    ids=["github", "gitlab", "bitbucket"],
)
def test_a_comment_holding_the_review_command_asks_for_its_own_review(
    secrets, sent, key, url
) -> None:
    settings = dataclasses.replace(secrets, review_command="trigger")

    outcome = parse(sent, settings)

    assert isinstance(outcome, Trigger)
    assert (outcome.key, outcome.action, outcome.url) == (key, "command", url)


def test_an_azure_comment_holding_the_review_command_is_keyed_by_its_notification(
    secrets,
) -> None:
    sent = azure_comment("@conveyor review", repository="Fabrikam/Fabrikam", number=1,
                         head=HEAD)

    outcome = parse(sent, secrets)

    assert isinstance(outcome, Trigger)
    assert (outcome.key, outcome.action, outcome.url) == (
        f"azure-repos:Fabrikam/Fabrikam:1:{HEAD}:{sent.payload()['id']}", "command",
        "https://dev.azure.com/fabrikam/Fabrikam/_git/Fabrikam/pullrequest/1")
