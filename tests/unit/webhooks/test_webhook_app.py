"""The HTTP edge: every refusal and every ignored delivery answers without touching storage.

The app's `jobs` provider raises if called, so each test here also proves that nothing was
enqueued. Deliveries that do reach `jobs` are covered by the integration tests.
"""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import urlencode

import pytest
from falcon import testing

from conveyor.settings import Settings
from tests.deliveries import credentials

CASES = [
    ("github", "pull_request.opened", "X-Hub-Signature-256", {"github_secret": "not-it"}),
    ("gitlab", "merge_request.open", "X-Gitlab-Token", {"gitlab_token": "not-it"}),
    ("bitbucket", "pullrequest.created", "X-Hub-Signature", {"bitbucket_secret": "not-it"}),
    ("azure-repos", "git.pullrequest.created", "Authorization", {"azure_password": "not-it"}),
]
# Closed and merged pull requests reach the event store (to cancel a running review):
# tests/integration/test_webhooks_superseding.py covers them.
IGNORED = [
    ("github", "issue_comment.created"),
    ("github", "pull_request.edited"),
    ("gitlab", "note.merge_request"),
    ("bitbucket", "pullrequest.comment_created"),
    ("azure-repos", "ms.vss-code.git-pullrequest-comment-event"),
]


def post(client: testing.TestClient, platform: str, headers: dict[str, str], body: bytes):
    return client.simulate_post(f"/webhooks/{platform}", headers=headers, body=body)


def assert_error(result: testing.Result, status: int) -> None:
    assert result.status_code == status
    assert result.headers["content-type"] == "application/json"
    assert set(result.json) == {"title", "description"}


def test_liveness_answers_ok(client) -> None:
    result = client.simulate_get("/health/live")

    assert (result.status_code, result.json) == (200, {"status": "ok"})


def test_an_unknown_platform_is_not_found(client) -> None:
    assert_error(post(client, "sourcehut", {"Content-Type": "application/json"}, b"{}"), 404)


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES)
def test_a_platform_without_its_secret_answers_not_found(
    delivery, client_for, platform, name, header, wrong
) -> None:
    sent = delivery(platform, name)

    result = post(client_for(Settings()), platform, sent.headers, sent.body)

    assert_error(result, 404)


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES)
def test_a_wrong_secret_is_unauthorized(
    delivery, client_for, secrets, platform, name, header, wrong
) -> None:
    sent = delivery(platform, name)
    client = client_for(dataclasses.replace(secrets, **wrong))

    assert_error(post(client, platform, sent.headers, sent.body), 401)


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES)
def test_a_missing_credential_header_is_unauthorized(
    delivery, client, platform, name, header, wrong
) -> None:
    sent = delivery(platform, name).with_headers(**{header: None})

    result = post(client, platform, sent.headers, sent.body)

    assert_error(result, 401)
    assert "www-authenticate" in result.headers


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES[::2])
def test_a_signed_body_altered_by_one_byte_is_unauthorized(
    delivery, client, platform, name, header, wrong
) -> None:
    sent = delivery(platform, name)
    altered = sent.body.replace(b'"', b"'", 1)

    assert_error(post(client, platform, sent.headers, altered), 401)


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES[::2])
def test_a_signed_body_re_serialised_is_unauthorized(
    delivery, client, platform, name, header, wrong
) -> None:
    sent = delivery(platform, name)
    reserialised = json.dumps(sent.payload()).encode()

    assert_error(post(client, platform, sent.headers, reserialised), 401)


@pytest.mark.parametrize(("platform", "name", "header", "wrong"), CASES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_an_authentic_delivery_with_the_wrong_content_type_is_unsupported(
    delivery, client, platform, name, header, wrong, content_type
) -> None:
    sent = delivery(platform, name).with_headers(content_type=content_type)

    assert_error(post(client, platform, sent.headers, sent.body), 415)


@pytest.mark.parametrize(
    ("platform", "name", "header"),
    [
        ("github", "pull_request.opened", "X-GitHub-Event"),
        ("gitlab", "merge_request.open", "X-Gitlab-Event"),
        ("bitbucket", "pullrequest.created", "X-Event-Key"),
    ],
)
def test_an_authentic_delivery_without_its_event_header_is_a_bad_request(
    delivery, client, platform, name, header
) -> None:
    sent = delivery(platform, name).with_headers(**{header: None})

    assert_error(post(client, platform, sent.headers, sent.body), 400)


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00{}", b"[1, 2]"])
def test_authentic_malformed_json_is_a_bad_request(secrets, client, body) -> None:
    headers = credentials(
        "github", {"Content-Type": "application/json", "X-GitHub-Event": "pull_request"}, body)

    assert_error(post(client, "github", headers, body), 400)


def test_an_authentic_form_body_that_is_not_utf8_is_a_bad_request(secrets, client) -> None:
    body = b"payload=%FF%FE"
    headers = credentials(
        "github", {"Content-Type": "application/x-www-form-urlencoded", "X-GitHub-Event": "ping"},
        body)

    assert_error(post(client, "github", headers, body), 400)


def test_a_body_declared_larger_than_the_limit_is_refused_before_reading(
    delivery, secrets, client_for
) -> None:
    sent = delivery("github", "pull_request.opened")
    client = client_for(dataclasses.replace(secrets, max_body_bytes=len(sent.body) - 1))

    assert_error(post(client, "github", sent.headers, sent.body), 413)


def test_a_chunked_body_over_the_limit_is_refused_while_reading(
    delivery, secrets, client_for
) -> None:
    sent = delivery("github", "pull_request.opened")
    app = client_for(dataclasses.replace(secrets, max_body_bytes=1000)).app
    environ = testing.create_environ(
        method="POST", path="/webhooks/github", headers=sent.headers, body=sent.body
    )
    del environ["CONTENT_LENGTH"]
    start_response = testing.StartResponseMock()

    body = b"".join(app(environ, start_response))

    assert start_response.status.startswith("413")
    assert set(json.loads(body)) == {"title", "description"}


def test_a_chunked_body_within_the_limit_is_read_to_the_end(delivery, client) -> None:
    sent = delivery("github", "ping")
    app = client.app
    environ = testing.create_environ(
        method="POST", path="/webhooks/github", headers=sent.headers, body=sent.body
    )
    del environ["CONTENT_LENGTH"]
    start_response = testing.StartResponseMock()

    body = b"".join(app(environ, start_response))

    assert (start_response.status, json.loads(body)) == ("200 OK", {"status": "pong"})


def test_a_github_ping_answers_pong(delivery, client) -> None:
    sent = delivery("github", "ping")

    result = post(client, "github", sent.headers, sent.body)

    assert (result.status_code, result.json) == (200, {"status": "pong"})


def test_a_form_encoded_github_ping_answers_pong(delivery, secrets, client) -> None:
    form = urlencode({"payload": delivery("github", "ping").body.decode()}).encode()
    headers = credentials(
        "github", {"Content-Type": "application/x-www-form-urlencoded", "X-GitHub-Event": "ping"},
        form)

    result = post(client, "github", headers, form)

    assert (result.status_code, result.json) == (200, {"status": "pong"})


@pytest.mark.parametrize(("platform", "name"), IGNORED)
def test_an_authentic_delivery_that_asks_for_nothing_is_ignored_with_a_reason(
    delivery, client, platform, name
) -> None:
    sent = delivery(platform, name)

    result = post(client, platform, sent.headers, sent.body)

    assert result.status_code == 200
    assert result.json["status"] == "ignored"
    assert result.json["reason"]


def test_a_get_on_a_webhook_endpoint_is_not_allowed(client) -> None:
    assert client.simulate_get("/webhooks/github").status_code == 405
