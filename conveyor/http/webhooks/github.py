"""GitHub: `X-Hub-Signature-256` over the raw body; pull request events and review comments."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Any

import orjson

from conveyor.http.webhooks.platform import (
    Headers,
    asks_for_review,
    check_hmac_sha256,
    dig,
    event_header,
    load_payload,
    required,
    text,
)
from conveyor.http.webhooks.trigger import Closing, Ignored, Outcome, Pong, Trigger
from conveyor.settings import Settings

ACTIONS = {
    "opened": "opened",
    "reopened": "reopened",
    "synchronize": "updated",
    "ready_for_review": "ready",
}


class GitHub:
    """Repository webhooks, JSON or form-encoded, signed with the webhook secret."""

    name = "github"
    audit_headers: tuple[str, ...] = (
        "content-type", "user-agent", "x-github-event", "x-github-delivery", "x-github-hook-id",
        "x-github-hook-installation-target-type", "x-github-hook-installation-target-id",
        "x-hub-signature-256",
    )

    def enabled(self, settings: Settings) -> bool:
        return bool(settings.github_secret)

    def verify(self, headers: Headers, body: bytes, settings: Settings) -> None:
        check_hmac_sha256(headers.get("x-hub-signature-256"), body, settings.github_secret or "")

    def parse(self, headers: Headers, body: bytes, settings: Settings) -> Outcome:
        event = event_header(headers, "X-GitHub-Event")
        payload = load_payload(headers, body, form_field="payload")
        delivery = text(headers.get("x-github-delivery"))
        if event == "ping":
            return Pong()
        if event == "pull_request":
            return pull_request(payload, delivery)
        if event == "issue_comment":
            return issue_comment(payload, delivery, settings)
        return Ignored(f"{event!r} events do not start a review")


def pull_request(payload: dict[str, Any], delivery: str | None) -> Outcome:
    """Opened, pushed to, reopened or made ready: review the head commit; closed: cancel."""
    action = text(payload.get("action")) or ""
    pr = payload.get("pull_request")
    if action == "closed":
        return Closing(
            platform="github",
            repository=required(dig(payload, "repository", "full_name"), "repository.full_name"),
            pull_request=required(dig(pr, "number") or payload.get("number"), "the PR number"),
            reason="merged" if dig(pr, "merged") is True else "closed",
            sender=text(dig(payload, "sender", "login")),
            delivery_id=delivery,
        )
    if action not in ACTIONS:
        return Ignored(f"pull_request action {action!r} does not start a review")
    if dig(pr, "draft") is True:
        return Ignored("draft pull requests are reviewed once ready for review")
    repository = required(dig(payload, "repository", "full_name"), "repository.full_name")
    return Trigger(
        platform="github",
        repository=repository,
        pull_request=required(dig(pr, "number") or payload.get("number"), "the PR number"),
        head_commit=required(dig(pr, "head", "sha"), "pull_request.head.sha"),
        base_branch=text(dig(pr, "base", "ref")),
        action=ACTIONS[action],
        sender=text(dig(payload, "sender", "login")),
        delivery_id=delivery,
        url=text(dig(pr, "html_url")),
        organization=organization(payload, repository),
    )


def issue_comment(payload: dict[str, Any], delivery: str | None, settings: Settings) -> Outcome:
    """A new comment on a pull request that holds the review command."""
    if payload.get("action") != "created":
        return Ignored("only new comments can ask for a review")
    issue = payload.get("issue")
    if not isinstance(dig(issue, "pull_request"), dict):
        return Ignored("the comment is on an issue, not a pull request")
    if not asks_for_review(dig(payload, "comment", "body"), settings):
        return Ignored("the comment does not contain the review command")
    repository = required(dig(payload, "repository", "full_name"), "repository.full_name")
    return Trigger(
        platform="github",
        repository=repository,
        pull_request=required(dig(issue, "number"), "issue.number"),
        # Comment deliveries do not say which commit the pull request is at.
        head_commit=None,
        base_branch=None,
        action="command",
        sender=text(dig(payload, "comment", "user", "login") or dig(payload, "sender", "login")),
        delivery_id=delivery,
        url=text(dig(issue, "pull_request", "html_url") or dig(issue, "html_url")),
        command_id=required(dig(payload, "comment", "id"), "comment.id"),
        organization=organization(payload, repository),
    )


def organization(payload: dict[str, Any], repository: str) -> str:
    """The organisation the repository belongs to, or its owner for a personal repository.

    GitHub has no team on a pull request's delivery, so a GitHub job's team stays None.
    """
    return (text(dig(payload, "organization", "login"))
            or text(dig(payload, "repository", "owner", "login"))
            or repository.partition("/")[0])


PLATFORM = GitHub()


def sign_github(body: bytes, secret: str) -> dict[str, str]:
    """The signature header GitHub would send with `body`, for tests and sample deliveries."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}


def sample_github_delivery(
    secret: str, pull_request: int | None = None
) -> tuple[dict[str, str], bytes]:
    """A realistic signed `pull_request` `opened` delivery, for demos and benchmarks."""
    number = pull_request if pull_request is not None else 1
    delivery = str(uuid.uuid4())
    head = secrets.token_hex(20)  # a fresh commit each time, so each sample is a new job
    repo = "acme/api"
    login = "octocat"
    payload = {
        "action": "opened",
        "number": number,
        "pull_request": {
            "number": number,
            "state": "open",
            "draft": False,
            "title": f"Improve request validation ({number})",
            "html_url": f"https://github.com/{repo}/pull/{number}",
            "user": {"login": login, "type": "User"},
            "head": {"ref": f"feature-{number}", "sha": head, "repo": {"full_name": repo}},
            "base": {"ref": "main", "sha": "0" * 40, "repo": {"full_name": repo}},
        },
        "repository": {
            "full_name": repo,
            "name": "api",
            "owner": {"login": "acme"},
            "html_url": f"https://github.com/{repo}",
            "default_branch": "main",
        },
        "sender": {"login": login, "type": "User"},
    }
    body = orjson.dumps(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": delivery,
        **sign_github(body, secret),
    }
    return headers, body
