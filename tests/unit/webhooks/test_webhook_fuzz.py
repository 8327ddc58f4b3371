"""Whatever arrives, the ingest never answers 5xx; unsigned input never reaches storage."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from falcon import testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conveyor.http.webhooks.app import PLATFORMS
from conveyor.http.webhooks.platform import WebhookError, lower_headers
from conveyor.http.webhooks.trigger import Closing, Ignored, Pong, Trigger

RECEIVED = datetime(2025, 1, 1, tzinfo=UTC)
ENDPOINTS = [*PLATFORMS, "unknown", ""]
HEADER_NAMES = [
    "Content-Type",
    "Content-Length",
    "Authorization",
    "X-Hub-Signature",
    "X-Hub-Signature-256",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-Gitlab-Token",
    "X-Gitlab-Event",
    "X-Event-Key",
    "X-Request-ID",
    "Accept",
]
# WSGI servers hand header values over as latin-1 text without control characters.
header_values = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "application/json; charset=utf-8",
            "pull_request",
            "ping",
            "Merge Request Hook",
            "pullrequest:created",
            "Basic dGVzdC11c2VyOnRlc3QtcGFzc3dvcmQ=",
            "sha256=00",
            "-1",
            "0",
            "99999999999999999999",
        ]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")),
)
headers = st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=8)

KEYS = [
    "action", "pull_request", "number", "draft", "head", "sha", "base", "ref", "html_url",
    "repository", "full_name", "sender", "login", "issue", "comment", "body", "id", "user",
    "object_attributes", "iid", "oldrev", "last_commit", "changes", "previous", "current",
    "project", "path_with_namespace", "noteable_type", "note", "merge_request", "pullrequest",
    "state", "source", "commit", "hash", "content", "raw", "eventType", "resource", "status",
    "message", "text", "pullRequestId", "lastMergeSourceCommit", "commitId", "pullRequest",
    "name", "remoteUrl", "targetRefName", "work_in_progress", "links", "href",
    "organization", "owner", "workspace", "slug", "key", "resourceContainers", "account",
    "collection", "baseUrl", "url",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["opened", "created", "update", "open", "MergeRequest", "OPEN", "active"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)
EVENTS = {
    "github": ["pull_request", "issue_comment", "ping", "push"],
    "gitlab": ["Merge Request Hook", "Note Hook", "Push Hook"],
    "bitbucket": ["pullrequest:created", "pullrequest:updated", "pullrequest:comment_created"],
    "azure-repos": ["(in the body)"],
}
AZURE_EVENTS = [
    "git.pullrequest.created",
    "git.pullrequest.updated",
    "git.pullrequest.merged",
    "ms.vss-code.git-pullrequest-comment-event",
]


@settings(max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    sent=headers,
    body=st.binary(max_size=2048) | st.builds(lambda v: json.dumps(v).encode(), json_values),
)
def test_arbitrary_requests_to_any_endpoint_never_answer_a_server_error(
    client, endpoint: str, sent: dict[str, str], body: bytes
) -> None:
    environ = testing.create_environ(
        method="POST", path=f"/webhooks/{endpoint}", headers=sent, body=body
    )
    if "Content-Length" in sent:
        environ["CONTENT_LENGTH"] = sent["Content-Length"]
    start_response = testing.StartResponseMock()

    answer = b"".join(client.app(environ, start_response))

    status = int(start_response.status.split()[0])
    event(str(status))
    assert status < 500, answer
    # Nothing unsigned is authentic, so nothing can have been accepted or stored.
    assert status in {400, 401, 404, 413, 415}, answer


@settings(max_examples=500, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), payload=json_values)
def test_parsing_any_verified_json_either_decides_or_refuses_cleanly(
    secrets, data: st.DataObject, payload: Any
) -> None:
    platform = data.draw(st.sampled_from(list(PLATFORMS)))
    name = data.draw(st.sampled_from(EVENTS[platform]))
    if platform == "azure-repos" and isinstance(payload, dict):
        payload = {**payload, "eventType": data.draw(st.sampled_from(AZURE_EVENTS))}
    sent = {
        "content-type": "application/json",
        "x-github-event": name,
        "x-gitlab-event": name,
        "x-event-key": name,
    }

    try:
        # A one-letter review command lets generated comments reach the command paths.
        outcome = PLATFORMS[platform].parse(
            sent, json.dumps(payload).encode(), dataclasses.replace(secrets, review_command="o")
        )
    except WebhookError as error:
        event(type(error).__name__)
        return

    event(f"{platform} {type(outcome).__name__}")
    assert isinstance(outcome, Trigger | Closing | Ignored | Pong)
    if isinstance(outcome, Trigger):
        assert outcome.repository and outcome.pull_request
        trigger = outcome.as_dict(RECEIVED)
        assert json.loads(json.dumps(trigger)) == trigger


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document that a value could be replaced at."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += paths(inner, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = document.copy()
    copy[path[0]] = replaced(document[path[0]], path[1:], value)
    return copy


@settings(max_examples=500, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_delivery_with_any_field_replaced_decides_or_refuses_cleanly(
    all_deliveries, secrets, data: st.DataObject
) -> None:
    platform, sent = data.draw(st.sampled_from(all_deliveries))
    payload = sent.payload()
    path = data.draw(st.sampled_from(paths(payload)))
    body = json.dumps(replaced(payload, path, data.draw(json_values))).encode()
    settings = dataclasses.replace(secrets, review_command="o")

    try:
        outcome = PLATFORMS[platform].parse(lower_headers(sent.headers), body, settings)
    except WebhookError as error:
        event(type(error).__name__)
        return

    event(f"{platform} {type(outcome).__name__}")
    if isinstance(outcome, Trigger):
        trigger = outcome.as_dict(RECEIVED)
        assert json.loads(json.dumps(trigger)) == trigger
