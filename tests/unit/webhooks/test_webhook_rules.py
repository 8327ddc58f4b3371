"""The rules beyond the recorded deliveries: drafts, pushes, commands and malformed payloads."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
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


def parse(platform: str, headers: dict[str, str], body: bytes, settings: Settings) -> Outcome:
    return PLATFORMS[platform].parse(lower_headers(headers), body, settings)


def edited(recorded: Any, change: Any) -> tuple[dict[str, str], bytes]:
    """The delivery with its payload changed; parsing never looks at the signature."""
    payload = recorded.payload()
    change(payload)
    return recorded.headers, json.dumps(payload).encode()


def test_a_draft_github_pull_request_waits_until_ready(delivery, secrets) -> None:
    headers, body = edited(
        delivery("github", "pull_request.opened"),
        lambda p: p["pull_request"].update(draft=True),
    )

    assert parse("github", headers, body, secrets) == Ignored(
        "draft pull requests are reviewed once ready for review"
    )


def test_a_github_comment_on_a_plain_issue_is_ignored(delivery, secrets) -> None:
    headers, body = edited(
        delivery("github", "issue_comment.created"), lambda p: p["issue"].pop("pull_request")
    )
    settings = dataclasses.replace(secrets, review_command="trigger")

    outcome = parse("github", headers, body, settings)

    assert outcome == Ignored("the comment is on an issue, not a pull request")


def test_a_form_encoded_github_delivery_is_read_from_its_payload_field(delivery, secrets) -> None:
    recorded = delivery("github", "pull_request.opened")
    form = urlencode({"payload": recorded.body.decode()}).encode()
    headers = {**recorded.headers, "Content-Type": "application/x-www-form-urlencoded"}

    outcome = parse("github", headers, form, secrets)

    assert isinstance(outcome, Trigger)
    assert outcome.head_commit == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


def test_a_gitlab_update_without_new_commits_is_ignored(delivery, secrets) -> None:
    headers, body = edited(
        delivery("gitlab", "merge_request.update"), lambda p: p["object_attributes"].pop("oldrev")
    )

    assert parse("gitlab", headers, body, secrets) == Ignored("the update pushed no new commits")


@pytest.mark.parametrize("field", ["draft", "work_in_progress"])
def test_a_gitlab_merge_request_taken_out_of_draft_is_reviewed(delivery, secrets, field) -> None:
    def ready(payload: dict[str, Any]) -> None:
        payload["object_attributes"].pop("oldrev")
        payload["changes"][field] = {"previous": True, "current": False}

    headers, body = edited(delivery("gitlab", "merge_request.update"), ready)

    outcome = parse("gitlab", headers, body, secrets)

    assert isinstance(outcome, Trigger)
    assert outcome.action == "ready"


def test_a_draft_gitlab_merge_request_is_not_reviewed(delivery, secrets) -> None:
    headers, body = edited(
        delivery("gitlab", "merge_request.open"),
        lambda p: p["object_attributes"].update(draft=True),
    )

    assert parse("gitlab", headers, body, secrets) == Ignored(
        "draft merge requests are reviewed once marked ready"
    )


def test_a_declined_bitbucket_pull_request_is_ignored(delivery, secrets) -> None:
    headers, body = edited(
        delivery("bitbucket", "pullrequest.updated"),
        lambda p: p["pullrequest"].update(state="DECLINED"),
    )

    assert parse("bitbucket", headers, body, secrets) == Ignored(CLOSED)


def push_to_azure_pull_request(payload: dict[str, Any]) -> None:
    payload["resource"]["status"] = "active"
    payload["message"]["text"] = (
        "Jamal Hartnett updated the source branch of pull request 1 (my first pull request)"
    )


def test_an_azure_update_that_moved_the_source_branch_is_reviewed(delivery, secrets) -> None:
    headers, body = edited(
        delivery("azure-repos", "git.pullrequest.updated"), push_to_azure_pull_request
    )

    outcome = parse("azure-repos", headers, body, secrets)

    assert isinstance(outcome, Trigger)
    assert (outcome.action, outcome.head_commit, outcome.base_branch) == (
        "updated",
        "5555ffff566aa6bbbbbcc77ddddddd888888dddd",
        "main",
    )


def test_an_azure_update_that_did_not_move_the_source_branch_is_ignored(delivery, secrets) -> None:
    def vote(payload: dict[str, Any]) -> None:
        push_to_azure_pull_request(payload)
        payload["message"]["text"] = "Jamal Hartnett approved pull request 1"

    headers, body = edited(delivery("azure-repos", "git.pullrequest.updated"), vote)

    assert parse("azure-repos", headers, body, secrets) == Ignored(
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
    recorded = delivery(platform, name)

    with pytest.raises(MalformedDeliveryError):
        parse(platform, recorded.headers, body, secrets)


def test_a_pull_request_without_its_repository_is_malformed(delivery, secrets) -> None:
    headers, body = edited(delivery("github", "pull_request.opened"), lambda p: p.pop("repository"))

    with pytest.raises(MalformedDeliveryError, match=r"repository\.full_name"):
        parse("github", headers, body, secrets)


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
    recorded = delivery(platform, name).with_headers(**{header: None})

    with pytest.raises(MalformedDeliveryError, match=header):
        parse(platform, recorded.headers, recorded.body, secrets)


def test_an_azure_delivery_without_its_event_type_is_malformed(delivery, secrets) -> None:
    headers, body = edited(
        delivery("azure-repos", "git.pullrequest.created"), lambda p: p.pop("eventType")
    )

    with pytest.raises(MalformedDeliveryError, match="eventType"):
        parse("azure-repos", headers, body, secrets)


@pytest.mark.parametrize("platform", ["gitlab", "bitbucket", "azure-repos"])
def test_only_github_accepts_form_encoded_bodies(secrets, platform) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Gitlab-Event": "x"}

    with pytest.raises(UnsupportedMediaTypeError):
        parse(platform, {**headers, "X-Event-Key": "x"}, b"payload=%7B%7D", secrets)
