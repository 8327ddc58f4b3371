"""Azure Repos service hooks: HTTP Basic credentials; pull request events and comments.

Azure sends `git.pullrequest.updated` for every change to a pull request (votes, reviewers,
title, status, pushes) and the payload names no change type. The rule used here: an update
starts a review only when the pull request is still `active` and `message.text` says the
source branch was updated ("... updated the source branch of pull request 1 ..."), the text
Azure writes for a push. A completed or abandoned pull request is ignored as closed.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote, urlsplit

from conveyor.http.webhooks.platform import (
    CLOSED,
    Headers,
    MalformedDeliveryError,
    UnauthorizedError,
    asks_for_review,
    branch_name,
    dig,
    load_payload,
    required,
    same,
    text,
)
from conveyor.http.webhooks.trigger import Closing, Ignored, Outcome, Trigger
from conveyor.settings import Settings

CREATED = "git.pullrequest.created"
UPDATED = "git.pullrequest.updated"
MERGED = "git.pullrequest.merged"
COMMENTED = "ms.vss-code.git-pullrequest-comment-event"
SOURCE_MOVED = "updated the source branch"


class Azure:
    """Web Hooks service-hook subscriptions configured with basic authentication."""

    name = "azure-repos"
    # Never Authorization: it carries the credentials.
    audit_headers: tuple[str, ...] = (
        "content-type", "user-agent", "request-id", "x-vss-activityid",
    )

    def enabled(self, settings: Settings) -> bool:
        return bool(settings.azure_username and settings.azure_password)

    def verify(self, headers: Headers, body: bytes, settings: Settings) -> None:
        scheme, _, encoded = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise UnauthorizedError("The delivery carries no basic credentials.")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise UnauthorizedError("The basic credentials are not valid base64.") from None
        username, _, password = decoded.partition(":")
        # Compare both, always, so the time taken does not tell which one was wrong.
        user_ok = same(username, settings.azure_username or "")
        password_ok = same(password, settings.azure_password or "")
        if not (user_ok and password_ok):
            raise UnauthorizedError("The basic credentials do not match.")

    def parse(self, headers: Headers, body: bytes, settings: Settings) -> Outcome:
        payload = load_payload(headers, body)
        event = required(payload.get("eventType"), "eventType")
        # The notification id; Azure's comment ids are only unique within one thread.
        delivery = text(payload.get("id"))
        resource = payload.get("resource")
        if event == MERGED:
            if text(dig(resource, "status")) != "completed":
                return Ignored("the merge was attempted but the pull request is not completed")
            return closing(resource, delivery)
        containers = payload.get("resourceContainers")
        if event == CREATED:
            return pull_request(resource, containers, delivery, "opened")
        if event == UPDATED:
            message = text(dig(payload, "message", "text")) or ""
            if text(dig(resource, "status")) in {"completed", "abandoned"}:
                return closing(resource, delivery)
            if SOURCE_MOVED not in message.lower():
                return Ignored("the update did not move the source branch")
            return pull_request(resource, containers, delivery, "updated")
        if event == COMMENTED:
            comment = dig(resource, "comment")
            if not asks_for_review(dig(comment, "content"), settings):
                return Ignored("the comment does not contain the review command")
            return pull_request(
                dig(resource, "pullRequest"),
                containers,
                delivery,
                "command",
                command=delivery or required(dig(comment, "id"), "comment.id"),
                sender=text(dig(comment, "author", "uniqueName")),
            )
        return Ignored(f"{event!r} events do not start a review")


def pull_request(
    pr: Any,
    containers: Any,
    delivery: str | None,
    action: str,
    *,
    command: str | None = None,
    sender: str | None = None,
) -> Outcome:
    """The pull request's last merge source commit, while the pull request is active."""
    status = text(dig(pr, "status"))
    if status in {"completed", "abandoned"}:
        return Ignored(CLOSED)
    repo = dig(pr, "repository")
    project = required(dig(repo, "project", "name"), "repository.project.name")
    name = required(dig(repo, "name"), "repository.name")
    number = required(dig(pr, "pullRequestId"), "pullRequestId")
    remote = text(dig(repo, "remoteUrl"))
    account = organization(containers, repo, pr)
    if account is None:
        raise MalformedDeliveryError("The payload names no organisation (no Azure DevOps URL).")
    return Trigger(
        platform="azure-repos",
        repository=f"{project}/{name}",
        pull_request=number,
        head_commit=required(dig(pr, "lastMergeSourceCommit", "commitId"), "the source commit"),
        base_branch=branch_name(text(dig(pr, "targetRefName"))),
        action=action,
        # Azure names the pull request's author, not who pushed; it is the best there is.
        sender=sender or text(dig(pr, "createdBy", "uniqueName")),
        delivery_id=delivery,
        url=f"{remote}/pullrequest/{number}" if remote else None,
        command_id=command,
        organization=account,
        # The project is the team: an organisation's repositories are grouped by project.
        team=project,
    )


def organization(containers: Any, repo: Any, pr: Any) -> str | None:
    """The Azure DevOps organisation, read from the first URL the delivery gives.

    `https://dev.azure.com/{organization}/...` and the older
    `https://{organization}.visualstudio.com/...`; an Azure DevOps Server's URL gives its
    collection (`https://server[/tfs]/{collection}/...`), its equivalent of an organisation.
    Organisation names are case-insensitive on Azure DevOps, so they are kept lower-cased.
    """
    for url in (dig(containers, "account", "baseUrl"), dig(containers, "collection", "baseUrl"),
                dig(repo, "remoteUrl"), dig(repo, "url"), dig(pr, "url")):
        found = organization_of(text(url))
        if found is not None:
            return found
    return None


def organization_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    segments = [s for s in parts.path.split("/") if s]
    if host.endswith(".visualstudio.com"):
        return host.removesuffix(".visualstudio.com") or None
    if host != "dev.azure.com" and segments and segments[0].lower() == "tfs":
        segments = segments[1:]
    return unquote(segments[0]).lower() if host and segments else None


def closing(pr: Any, delivery: str | None) -> Closing:
    """A completed pull request was merged; an abandoned one was closed."""
    repo = dig(pr, "repository")
    project = required(dig(repo, "project", "name"), "repository.project.name")
    name = required(dig(repo, "name"), "repository.name")
    return Closing(
        platform="azure-repos",
        repository=f"{project}/{name}",
        pull_request=required(dig(pr, "pullRequestId"), "pullRequestId"),
        reason="merged" if text(dig(pr, "status")) == "completed" else "closed",
        sender=text(dig(pr, "closedBy", "uniqueName") or dig(pr, "createdBy", "uniqueName")),
        delivery_id=delivery,
    )


PLATFORM = Azure()
