"""GitLab: the `X-Gitlab-Token` secret; merge request events and review comments."""

from __future__ import annotations

from typing import Any

from conveyor.http.webhooks.platform import (
    Headers,
    UnauthorizedError,
    asks_for_review,
    dig,
    event_header,
    load_payload,
    required,
    same,
    text,
)
from conveyor.http.webhooks.trigger import Closing, Ignored, Outcome, Trigger
from conveyor.settings import Settings

ACTIONS = {"open": "opened", "reopen": "reopened", "update": "updated"}


class GitLab:
    """Project or group webhooks that carry the configured secret token."""

    name = "gitlab"
    # Never X-Gitlab-Token: it is the secret itself.
    audit_headers: tuple[str, ...] = (
        "content-type", "user-agent", "x-gitlab-event", "x-gitlab-event-uuid",
        "x-gitlab-webhook-uuid", "x-gitlab-instance", "idempotency-key",
    )

    def enabled(self, settings: Settings) -> bool:
        return bool(settings.gitlab_token)

    def verify(self, headers: Headers, body: bytes, settings: Settings) -> None:
        token = headers.get("x-gitlab-token")
        if not token:
            raise UnauthorizedError("The delivery carries no X-Gitlab-Token.")
        if not same(token, settings.gitlab_token or ""):
            raise UnauthorizedError("The X-Gitlab-Token does not match.")

    def parse(self, headers: Headers, body: bytes, settings: Settings) -> Outcome:
        event = event_header(headers, "X-Gitlab-Event")
        payload = load_payload(headers, body)
        # Idempotency-Key stays the same across GitLab's retries of one delivery.
        delivery = text(headers.get("idempotency-key") or headers.get("x-gitlab-event-uuid"))
        if event == "Merge Request Hook":
            return merge_request(payload, delivery)
        if event == "Note Hook":
            return note(payload, delivery, settings)
        return Ignored(f"{event!r} events do not start a review")


def became_ready(changes: Any) -> bool:
    """Whether the update took the merge request out of draft."""
    return any(
        dig(changes, field, "previous") is True and dig(changes, field, "current") is False
        for field in ("draft", "work_in_progress")
    )


def merge_request(payload: dict[str, Any], delivery: str | None) -> Outcome:
    """Opened, reopened, pushed to (`oldrev` is set) or marked ready: review the last commit."""
    attrs = payload.get("object_attributes")
    action = text(dig(attrs, "action")) or ""
    if action in {"close", "merge"}:
        return Closing(
            platform="gitlab",
            repository=required(
                dig(payload, "project", "path_with_namespace"), "project.path_with_namespace"
            ),
            pull_request=required(dig(attrs, "iid"), "object_attributes.iid"),
            reason="merged" if action == "merge" else "closed",
            sender=text(dig(payload, "user", "username")),
            delivery_id=delivery,
        )
    if action not in ACTIONS:
        return Ignored(f"merge request action {action!r} does not start a review")
    ready = action == "update" and became_ready(payload.get("changes"))
    if action == "update" and not text(dig(attrs, "oldrev")) and not ready:
        return Ignored("the update pushed no new commits")
    if dig(attrs, "draft") is True or dig(attrs, "work_in_progress") is True:
        return Ignored("draft merge requests are reviewed once marked ready")
    repository = required(
        dig(payload, "project", "path_with_namespace"), "project.path_with_namespace"
    )
    organization, team = tenant(repository)
    return Trigger(
        platform="gitlab",
        repository=repository,
        pull_request=required(dig(attrs, "iid"), "object_attributes.iid"),
        head_commit=required(dig(attrs, "last_commit", "id"), "object_attributes.last_commit"),
        base_branch=text(dig(attrs, "target_branch")),
        action="ready" if ready and not text(dig(attrs, "oldrev")) else ACTIONS[action],
        sender=text(dig(payload, "user", "username")),
        delivery_id=delivery,
        url=text(dig(attrs, "url")),
        organization=organization,
        team=team,
    )


def note(payload: dict[str, Any], delivery: str | None, settings: Settings) -> Outcome:
    """A comment on a merge request that holds the review command."""
    attrs = payload.get("object_attributes")
    if dig(attrs, "noteable_type") != "MergeRequest":
        return Ignored("the comment is not on a merge request")
    # Absent in older GitLab versions; anything but "create" (a list included) is no new comment.
    if dig(attrs, "action") not in (None, "create"):
        return Ignored("only new comments can ask for a review")
    if not asks_for_review(dig(attrs, "note"), settings):
        return Ignored("the comment does not contain the review command")
    mr = payload.get("merge_request")
    note_url = text(dig(attrs, "url"))
    repository = required(
        dig(payload, "project", "path_with_namespace"), "project.path_with_namespace"
    )
    organization, team = tenant(repository)
    return Trigger(
        platform="gitlab",
        repository=repository,
        pull_request=required(dig(mr, "iid"), "merge_request.iid"),
        head_commit=text(dig(mr, "last_commit", "id")),
        base_branch=text(dig(mr, "target_branch")),
        action="command",
        sender=text(dig(payload, "user", "username")),
        delivery_id=delivery,
        url=text(dig(mr, "url")) or (note_url.split("#", 1)[0] if note_url else None),
        command_id=required(dig(attrs, "id"), "object_attributes.id"),
        organization=organization,
        team=team,
    )


def tenant(path_with_namespace: str) -> tuple[str, str | None]:
    """The organisation and team of a project: its top-level namespace, and the subgroups
    between that and the project (`acme/platform/api`: `acme`, `platform`; `acme/api`:
    `acme` and no team)."""
    *namespaces, _project = path_with_namespace.split("/")
    if not namespaces:
        return path_with_namespace, None
    return namespaces[0], "/".join(namespaces[1:]) or None


PLATFORM = GitLab()
