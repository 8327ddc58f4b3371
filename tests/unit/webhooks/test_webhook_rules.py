"""The rules beyond the common deliveries: drafts, pushes, commands and malformed payloads."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlencode

import pytest

from conveyor.http.webhooks.app import PLATFORMS
from conveyor.http.webhooks.platform import (
    CLOSED,
    MalformedDeliveryError,
    UnsupportedMediaTypeError,
    lower_headers,
)
from conveyor.http.webhooks.trigger import Ignored, Outcome, Trigger
from conveyor.settings import Settings
from tests.deliveries import (
    Delivery,
    azure_pull_request,
    bitbucket_pull_request,
    commit,
    github_comment,
    github_pull_request,
    gitlab_merge_request,
    gitlab_note,
)


def parse(platform: str, headers: dict[str, str], body: bytes, settings: Settings) -> Outcome:
    return PLATFORMS[platform].parse(lower_headers(headers), body, settings)


def parse_delivery(sent: Delivery, settings: Settings) -> Outcome:
    return parse(sent.platform, sent.headers, sent.body, settings)


def test_a_draft_github_pull_request_waits_until_ready(secrets) -> None:
    sent = github_pull_request("opened", draft=True)

    assert parse_delivery(sent, secrets) == Ignored(
        "draft pull requests are reviewed once ready for review"
    )


def test_a_github_comment_on_a_plain_issue_is_ignored(secrets) -> None:
    sent = github_comment("@conveyor review", on_pull_request=False)

    outcome = parse_delivery(sent, secrets)

    assert outcome == Ignored("the comment is on an issue, not a pull request")


def test_a_form_encoded_github_delivery_is_read_from_its_payload_field(secrets) -> None:
    head = commit()
    sent = github_pull_request("opened", head=head)
    form = urlencode({"payload": sent.body.decode()}).encode()
    headers = {**sent.headers, "Content-Type": "application/x-www-form-urlencoded"}

    outcome = parse("github", headers, form, secrets)

    assert isinstance(outcome, Trigger)
    assert outcome.head_commit == head


def test_a_gitlab_update_without_new_commits_is_ignored(secrets) -> None:
    sent = gitlab_merge_request("update", changes={"title": {"previous": "a", "current": "b"}})

    assert parse_delivery(sent, secrets) == Ignored("the update pushed no new commits")


@pytest.mark.parametrize("field", ["draft", "work_in_progress"])
def test_a_gitlab_merge_request_taken_out_of_draft_is_reviewed(secrets, field) -> None:
    sent = gitlab_merge_request("update", changes={field: {"previous": True, "current": False}})

    outcome = parse_delivery(sent, secrets)

    assert isinstance(outcome, Trigger)
    assert outcome.action == "ready"


def test_a_draft_gitlab_merge_request_is_not_reviewed(secrets) -> None:
    sent = gitlab_merge_request("open", draft=True)

    assert parse_delivery(sent, secrets) == Ignored(
        "draft merge requests are reviewed once marked ready"
    )


def test_a_declined_bitbucket_pull_request_is_ignored(secrets) -> None:
    sent = bitbucket_pull_request("pullrequest:updated", state="DECLINED")

    assert parse_delivery(sent, secrets) == Ignored(CLOSED)


def test_an_azure_update_that_moved_the_source_branch_is_reviewed(secrets) -> None:
    head = commit()
    sent = azure_pull_request(
        "git.pullrequest.updated", head=head,
        message="Jamal Hartnett updated the source branch of pull request 1 (my first PR)")

    outcome = parse_delivery(sent, secrets)

    assert isinstance(outcome, Trigger)
    assert (outcome.action, outcome.head_commit, outcome.base_branch) == ("updated", head, "main")


def test_an_azure_update_that_did_not_move_the_source_branch_is_ignored(secrets) -> None:
    sent = azure_pull_request("git.pullrequest.updated",
                              message="Jamal Hartnett approved pull request 1")

    assert parse_delivery(sent, secrets) == Ignored(
        "the update did not move the source branch"
    )


@pytest.mark.parametrize(
    ("platform", "name"),
    [("github", "pull_request.opened"), ("gitlab", "merge_request.open")],
)
@pytest.mark.parametrize("body", [b"[]", b'"text"', b"{", b"\xff\xfe{}", b""])
def test_a_body_that_is_not_a_json_object_is_malformed(
    delivery, secrets, platform, name, body
) -> None:
    sent = delivery(platform, name)

    with pytest.raises(MalformedDeliveryError):
        parse(platform, sent.headers, body, secrets)


def test_a_pull_request_without_its_repository_is_malformed(secrets) -> None:
    sent = github_pull_request("opened").with_payload(lambda p: p.pop("repository"))

    with pytest.raises(MalformedDeliveryError, match=r"repository\.full_name"):
        parse_delivery(sent, secrets)


@pytest.mark.parametrize(
    ("platform", "name", "header"),
    [
        ("github", "pull_request.opened", "X-GitHub-Event"),
        ("gitlab", "merge_request.open", "X-Gitlab-Event"),
        ("bitbucket", "pullrequest.created", "X-Event-Key"),
    ],
)
def test_a_delivery_without_its_event_header_is_malformed(
    delivery, secrets, platform, name, header
) -> None:
    sent = delivery(platform, name).with_headers(**{header: None})

    with pytest.raises(MalformedDeliveryError, match=header):
        parse_delivery(sent, secrets)


def test_an_azure_delivery_without_its_event_type_is_malformed(secrets) -> None:
    sent = azure_pull_request("git.pullrequest.created").with_payload(
        lambda p: p.pop("eventType"))

    with pytest.raises(MalformedDeliveryError, match="eventType"):
        parse_delivery(sent, secrets)


@pytest.mark.parametrize("platform", ["gitlab", "bitbucket", "azure-repos"])
def test_only_github_accepts_form_encoded_bodies(secrets, platform) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Gitlab-Event": "x"}

    with pytest.raises(UnsupportedMediaTypeError):
        parse(platform, {**headers, "X-Event-Key": "x"}, b"payload=%7B%7D", secrets)


def test_a_review_command_in_another_case_still_asks_for_a_review(secrets) -> None:
    sent = github_comment("Please @Conveyor REVIEW this")

    outcome = parse_delivery(sent, dataclasses.replace(secrets, review_command="@conveyor review"))

    assert isinstance(outcome, Trigger)
    assert outcome.action == "command"


@pytest.mark.parametrize("action", [[], {}, ["create"]])
def test_a_gitlab_note_whose_action_is_not_text_is_ignored(secrets, action) -> None:
    sent = gitlab_note().with_payload(lambda p: p["object_attributes"].update(action=action))

    assert parse_delivery(sent, secrets) == Ignored("only new comments can ask for a review")
