"""Conformance: the real recorded deliveries, byte for byte, against the parsers and builders.

Each recorded delivery must verify with the platform's published test secret, become the
outcome written below, and be of the same shape as what `tests.deliveries` builds for it
(the same header names, the same kind of outcome): the builders the other tiers use are
only as good as this check.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from conveyor.http.webhooks.app import PLATFORMS
from conveyor.http.webhooks.platform import lower_headers
from conveyor.http.webhooks.trigger import Closing, Ignored, Outcome, Pong, Trigger
from conveyor.settings import Settings
from tests.deliveries import BUILDERS, SECRETS, Delivery, all_recorded, build, recorded

RECEIVED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NO_COMMAND = "the comment does not contain the review command"

AZURE_MERGED = Closing(
    "azure-repos", "Fabrikam/Fabrikam", "1", "merged", "fabrikamfiber4@hotmail.com",
    "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1",
)

# Every recorded fixture: (platform, name) -> the trigger's key and action, or the outcome.
EXPECTED: dict[tuple[str, str], tuple[str, str] | Closing | Ignored | Pong] = {
    ("github", "ping"): Pong(),
    ("github", "pull_request.opened"): (
        "github:Codertocat/Hello-World:2:ec26c3e57ca3a959ca5aad62de7213c562f8c821",
        "opened",
    ),
    ("github", "pull_request.synchronize"): (
        "github:Codertocat/Hello-World:2:ec26c3e57ca3a959ca5aad62de7213c562f8c821",
        "updated",
    ),
    ("github", "pull_request.reopened"): (
        "github:Codertocat/Hello-World:2:ec26c3e57ca3a959ca5aad62de7213c562f8c821",
        "reopened",
    ),
    ("github", "pull_request.ready_for_review"): (
        "github:Codertocat/Hello-World:2:ec26c3e57ca3a959ca5aad62de7213c562f8c821",
        "ready",
    ),
    ("github", "pull_request.closed"): Closing(
        "github", "Codertocat/Hello-World", "2", "closed", "Codertocat",
        "8bd80012-3c3e-5307-8660-5b646d86ff4c",
    ),
    ("github", "pull_request.edited"): Ignored(
        "pull_request action 'edited' does not start a review"
    ),
    ("github", "issue_comment.created"): Ignored(NO_COMMAND),
    ("gitlab", "merge_request.open"): (
        "gitlab:gitlabhq/gitlab-test:1:da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "opened",
    ),
    ("gitlab", "merge_request.reopen"): (
        "gitlab:gitlab-org/hello-world:1:c4c79227ed610f1151f05bbc5be33b4f340d39c8",
        "reopened",
    ),
    ("gitlab", "merge_request.update"): (
        "gitlab:test/woodpecker:2:0ab96a10266b95b4b533dcfd98738015fbe70889",
        "updated",
    ),
    ("gitlab", "merge_request.close"): Closing(
        "gitlab", "gitlab-org/hello-world", "1", "closed", "sytses",
        "5b5c5c05-ba7a-597b-90d7-a7d5ece7ae00",
    ),
    ("gitlab", "merge_request.merge"): Closing(
        "gitlab", "gitlab-org/hello-world", "1", "merged", "sytses",
        "32f77535-f539-5ff3-8799-6f0b36300425",
    ),
    ("gitlab", "note.merge_request"): Ignored(NO_COMMAND),
    ("bitbucket", "pullrequest.created"): ("bitbucket:brydzewski/foo:1:507a576e59b3", "opened"),
    ("bitbucket", "pullrequest.updated"): ("bitbucket:brydzewski/foo:1:0704fc5beccc", "updated"),
    ("bitbucket", "pullrequest.fulfilled"): Closing(
        "bitbucket", "brydzewski/foo", "1", "merged", "brydzewski",
        "523599c6-1df1-5a76-940e-85ef384351b3",
    ),
    ("bitbucket", "pullrequest.comment_created"): Ignored(NO_COMMAND),
    ("azure-repos", "git.pullrequest.created"): (
        "azure-repos:Fabrikam/Fabrikam:1:4444eeee455ff5aaaaabb66ccccccccc7777cccc",
        "opened",
    ),
    # The sample update is the pull request being completed, not a push.
    ("azure-repos", "git.pullrequest.updated"): AZURE_MERGED,
    ("azure-repos", "git.pullrequest.merged"): AZURE_MERGED,
    ("azure-repos", "ms.vss-code.git-pullrequest-comment-event"): Ignored(NO_COMMAND),
}


# Every recorded fixture -> the (organization, team) its job belongs to, with the review
# command set to a word its comment holds; None where the delivery starts no job.
TENANTS: dict[tuple[str, str], tuple[str, str | None] | None] = {
    ("github", "ping"): None,
    # A personal repository: the owner, a user, is the organisation.
    ("github", "pull_request.opened"): ("Codertocat", None),
    ("github", "pull_request.synchronize"): ("Codertocat", None),
    ("github", "pull_request.reopened"): ("Codertocat", None),
    ("github", "pull_request.ready_for_review"): ("Codertocat", None),
    ("github", "pull_request.closed"): None,
    ("github", "pull_request.edited"): None,
    # An organisation's repository, with the `organization` object.
    ("github", "issue_comment.created"): ("abc", None),
    # GitLab's own `project.namespace` is a display name ("GitlabHQ"); the path is the truth.
    ("gitlab", "merge_request.open"): ("gitlabhq", None),
    ("gitlab", "merge_request.reopen"): ("gitlab-org", None),
    ("gitlab", "merge_request.update"): ("test", None),
    ("gitlab", "merge_request.close"): None,
    ("gitlab", "merge_request.merge"): None,
    ("gitlab", "note.merge_request"): ("gitlab-org", None),
    # The older captures have no `workspace`: the full name's first part is the workspace.
    ("bitbucket", "pullrequest.created"): ("brydzewski", None),
    ("bitbucket", "pullrequest.updated"): ("brydzewski", None),
    ("bitbucket", "pullrequest.fulfilled"): None,
    ("bitbucket", "pullrequest.comment_created"): ("rutvijmehta-harness", "TEST"),
    # From `remoteUrl`, dev.azure.com and visualstudio.com alike.
    ("azure-repos", "git.pullrequest.created"): ("fabrikam", "Fabrikam"),
    ("azure-repos", "git.pullrequest.updated"): None,
    ("azure-repos", "git.pullrequest.merged"): None,
    ("azure-repos", "ms.vss-code.git-pullrequest-comment-event"): ("fabrikam", "Fabrikam"),
}
COMMAND_WORDS = {"github": "TRIGGER", "gitlab": "needs work", "bitbucket": "test comment",
                 "azure-repos": "this is my comment"}


def parse(delivery: Delivery, settings: Settings = SECRETS) -> Outcome:
    return PLATFORMS[delivery.platform].parse(
        lower_headers(delivery.headers), delivery.body, settings)


def test_the_recorded_deliveries_are_every_kind_the_builders_make() -> None:
    assert sorted(all_recorded()) == sorted(EXPECTED) == sorted(BUILDERS) == sorted(TENANTS)


@pytest.mark.parametrize(("platform", "name"), list(EXPECTED))
def test_every_recorded_delivery_verifies_with_the_published_test_secret(
    platform: str, name: str
) -> None:
    sent = recorded(platform, name)

    PLATFORMS[platform].verify(lower_headers(sent.headers), sent.body, SECRETS)


@pytest.mark.parametrize(("platform", "name"), list(EXPECTED))
def test_every_recorded_delivery_has_the_expected_outcome(platform: str, name: str) -> None:
    outcome = parse(recorded(platform, name))

    expected = EXPECTED[platform, name]
    if isinstance(expected, tuple):
        assert isinstance(outcome, Trigger)
        assert (outcome.key, outcome.action, outcome.platform) == (*expected, platform)
        trigger = outcome.as_dict(RECEIVED)
        assert json.loads(json.dumps(trigger)) == trigger
        assert trigger["received_at"] == "2025-03-01T12:00:00+00:00"
    else:
        assert outcome == expected


@pytest.mark.parametrize(("platform", "name"), list(EXPECTED))
def test_every_recorded_delivery_names_the_exact_tenant_of_its_job(
    platform: str, name: str
) -> None:
    settings = dataclasses.replace(SECRETS, review_command=COMMAND_WORDS[platform])

    outcome = parse(recorded(platform, name), settings)

    found = (outcome.organization, outcome.team) if isinstance(outcome, Trigger) else None
    assert found == TENANTS[platform, name]


def kind(outcome: Outcome) -> tuple[str, str | None]:
    """What a delivery asks for, without the values that differ from delivery to delivery."""
    if isinstance(outcome, Trigger):
        return "Trigger", outcome.action
    return type(outcome).__name__, getattr(outcome, "reason", None)


@pytest.mark.parametrize(("platform", "name"), list(EXPECTED))
def test_the_builder_of_each_kind_sends_the_recorded_headers_and_asks_the_same(
    platform: str, name: str
) -> None:
    real, built = recorded(platform, name), build(platform, name)

    assert {h.lower() for h in built.headers} == {h.lower() for h in real.headers}
    assert kind(parse(built)) == kind(parse(real))


def test_a_github_pull_request_becomes_the_full_normalised_trigger() -> None:
    outcome = parse(recorded("github", "pull_request.opened"))

    assert isinstance(outcome, Trigger)
    assert outcome.as_dict(RECEIVED) == {
        "platform": "github",
        "repository": "Codertocat/Hello-World",
        "pull_request": "2",
        "head_commit": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
        "base_branch": "master",
        "action": "opened",
        "sender": "Codertocat",
        "delivery_id": "e5427a2e-9e57-56d9-85f0-c6782667379f",
        "received_at": "2025-03-01T12:00:00+00:00",
        "url": "https://github.com/Codertocat/Hello-World/pull/2",
    }


@pytest.mark.parametrize(
    ("platform", "name", "command", "key", "url"),
    [
        (
            "github",
            "issue_comment.created",
            "TRIGGER",
            "github:abc/def-ci-webhook-test:2::751955664",
            "https://github.com/abc/def-ci-webhook-test/pull/2",
        ),
        (
            "gitlab",
            "note.merge_request",
            "needs work",
            "gitlab:gitlab-org/gitlab-test:1:562e173be03b8ff2efb05345d12df18815438a4b:1244",
            "http://example.com/gitlab-org/gitlab-test/merge_requests/1",
        ),
        (
            "bitbucket",
            "pullrequest.comment_created",
            "test comment",
            "bitbucket:rutvijmehta-harness/spring-cloud-alibaba:1:b9437f32dddd:311512047",
            "https://bitbucket.org/rutvijmehta-harness/spring-cloud-alibaba/pull-requests/1",
        ),
        (
            "azure-repos",
            "ms.vss-code.git-pullrequest-comment-event",
            "this is my comment",
            "azure-repos:Fabrikam/Fabrikam:1:4444eeee455ff5aaaaabb66ccccccccc7777cccc"
            ":a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1",
            "https://fabrikam.visualstudio.com/DefaultCollection/_git/Fabrikam/pullrequest/1",
        ),
    ],
)
def test_a_recorded_comment_holding_the_review_command_asks_for_its_own_review(
    platform: str, name: str, command: str, key: str, url: str
) -> None:
    settings = dataclasses.replace(SECRETS, review_command=command)

    outcome = parse(recorded(platform, name), settings)

    assert isinstance(outcome, Trigger)
    assert (outcome.key, outcome.action, outcome.url) == (key, "command", url)
