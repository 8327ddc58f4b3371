"""Bitbucket Cloud: `X-Hub-Signature` HMAC over the raw body; pull request events and comments."""

from __future__ import annotations

from typing import Any

from conveyor.http.webhooks.platform import (
    CLOSED,
    Headers,
    asks_for_review,
    check_hmac_sha256,
    dig,
    event_header,
    load_payload,
    required,
    text,
)
from conveyor.http.webhooks.trigger import Closing, Ignored, Outcome, Trigger
from conveyor.settings import Settings

ACTIONS = {"pullrequest:created": "opened", "pullrequest:updated": "updated"}
CLOSING = {"pullrequest:fulfilled": "merged", "pullrequest:rejected": "closed"}


class Bitbucket:
    """Repository webhooks signed with the webhook secret."""

    name = "bitbucket"
    audit_headers: tuple[str, ...] = (
        "content-type", "user-agent", "x-event-key", "x-request-uuid", "x-hook-uuid",
        "x-attempt-number", "x-hub-signature",
    )

    def enabled(self, settings: Settings) -> bool:
        return bool(settings.bitbucket_secret)

    def verify(self, headers: Headers, body: bytes, settings: Settings) -> None:
        check_hmac_sha256(headers.get("x-hub-signature"), body, settings.bitbucket_secret or "")

    def parse(self, headers: Headers, body: bytes, settings: Settings) -> Outcome:
        event = event_header(headers, "X-Event-Key")
        payload = load_payload(headers, body)
        delivery = text(headers.get("x-request-uuid"))
        if event in CLOSING:
            actor = payload.get("actor")
            repository = dig(payload, "repository", "full_name")
            return Closing(
                platform="bitbucket",
                repository=required(repository, "repository.full_name"),
                pull_request=required(dig(payload, "pullrequest", "id"), "pullrequest.id"),
                reason=CLOSING[event],
                sender=text(dig(actor, "username") or dig(actor, "nickname")),
                delivery_id=delivery,
            )
        if event in ACTIONS:
            return pull_request(payload, delivery, ACTIONS[event])
        if event == "pullrequest:comment_created":
            comment = payload.get("comment")
            if not asks_for_review(dig(comment, "content", "raw"), settings):
                return Ignored("the comment does not contain the review command")
            command = required(dig(comment, "id"), "comment.id")
            return pull_request(payload, delivery, "command", command)
        return Ignored(f"{event!r} events do not start a review")


def pull_request(
    payload: dict[str, Any], delivery: str | None, action: str, command: str | None = None
) -> Outcome:
    """The pull request's source commit, while it is open.

    `pullrequest:updated` also fires for title or description edits; those land on the
    same idempotency key as the last review of that commit, so they start nothing new.
    """
    pr = payload.get("pullrequest")
    state = text(dig(pr, "state"))
    if state is not None and state != "OPEN":
        return Ignored(CLOSED)
    if command is None and dig(pr, "draft") is True:
        return Ignored("draft pull requests are reviewed once ready")
    actor = payload.get("actor")
    repository = required(dig(payload, "repository", "full_name"), "repository.full_name")
    return Trigger(
        platform="bitbucket",
        repository=repository,
        pull_request=required(dig(pr, "id"), "pullrequest.id"),
        head_commit=required(dig(pr, "source", "commit", "hash"), "the source commit"),
        base_branch=text(dig(pr, "destination", "branch", "name")),
        action=action,
        sender=text(dig(actor, "username") or dig(actor, "nickname") or dig(actor, "display_name")),
        delivery_id=delivery,
        url=text(dig(pr, "links", "html", "href")),
        command_id=command,
        # The workspace is the organisation; the repository's project, by key, the team.
        organization=(text(dig(payload, "repository", "workspace", "slug"))
                      or repository.partition("/")[0]),
        team=text(dig(payload, "repository", "project", "key")),
    )


PLATFORM = Bitbucket()
