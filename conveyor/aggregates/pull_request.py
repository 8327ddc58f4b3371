"""The PullRequest aggregate: which review of a pull request is the live one.

Saved in the same transaction as the job it requests, so its optimistic concurrency
serialises racing deliveries for one pull request: of two pushes, the one whose save the
log records last supersedes the other (docs/architecture.md §2.3).

A delivery that asks for a review arrives as a `Trigger`, the same plain values for
every platform; `decide_review` says what it means for the pull request as recorded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from conveyor.aggregates.job import job_id_for
from conveyor.errors import ConveyorError

PULL_REQUEST_NAMESPACE = uuid.UUID("0b6c7a52-3f0e-4d1c-8f3e-6a2d9c4b7e21")


def pull_request_id_for(platform: str, repository: str, number: str) -> uuid.UUID:
    """The deterministic id of one pull request, so every delivery for it finds the same one."""
    return uuid.uuid5(PULL_REQUEST_NAMESPACE, f"{platform}:{repository}:{number}")


class PullRequest(Aggregate):
    """A pull request as its deliveries described it: its head and the reviews requested."""

    @staticmethod
    def create_id(platform: str, repository: str, number: str) -> uuid.UUID:
        return pull_request_id_for(platform, repository, number)

    @event("Tracked")
    def __init__(self, platform: str, repository: str, number: str) -> None:
        self.platform = platform
        self.repository = repository
        self.number = number
        self.head: str | None = None
        # Every job ever requested for this pull request, so a re-delivered push of an
        # old commit finds its (perhaps superseded) job instead of starting it again.
        self.reviews: list[str] = []
        self.closed: str | None = None

    @property
    def review(self) -> str | None:
        """The job id of the latest review requested, the only one allowed to stay live."""
        return self.reviews[-1] if self.reviews else None

    def has_requested(self, job_id: uuid.UUID | str) -> bool:
        return str(job_id) in self.reviews

    def review_key(self, key: str, action: str | None, delivery_id: str | None) -> str:
        """The idempotency key a delivery's review goes by, given what came before.

        Reopening a pull request whose commit was already reviewed (its review perhaps
        cancelled by the close) asks for a fresh review, keyed by the reopening delivery
        so that a re-delivery of that same reopening is still a duplicate.
        """
        if action != "reopened" or not delivery_id:
            return key
        reopened = f"{key}:reopened:{delivery_id}"
        if self.has_requested(job_id_for(reopened)):
            return reopened
        if self.closed is not None and self.has_requested(job_id_for(key)):
            return reopened
        return key

    def request_review(
        self, job_id: uuid.UUID | str, head_commit: str | None, action: str, at: datetime
    ) -> None:
        if self.has_requested(job_id):
            raise ReviewAlreadyRequestedError(f"job {job_id} was already requested")
        self._review_requested(job_id=str(job_id), head_commit=head_commit, action=action, at=at)

    class ReviewRequested(Aggregate.Event):
        job_id: str
        head_commit: str | None
        action: str
        at: datetime

    @event(ReviewRequested)
    def _review_requested(
        self, job_id: str, head_commit: str | None, action: str, at: datetime
    ) -> None:
        self.reviews.append(job_id)
        if head_commit is not None:
            self.head = head_commit
        self.closed = None

    def close(self, reason: str, by: str, at: datetime) -> None:
        if self.closed is not None:
            raise PullRequestClosedError(f"pull request {self.id} is already {self.closed}")
        self._closed(reason=reason, by=by, at=at)

    class Closed(Aggregate.Event):
        reason: str
        by: str
        at: datetime

    @event(Closed)
    def _closed(self, reason: str, by: str, at: datetime) -> None:
        self.closed = reason


@dataclass(frozen=True)
class Trigger:
    """A delivery that asks for a code review, in platform-neutral plain values.

    `action` is one of `opened`, `reopened` (the pull request was opened or reopened),
    `updated` (new commits were pushed), `ready` (a draft was marked ready for review)
    and `command` (someone asked for a review with the review command in a comment).
    """

    platform: str
    repository: str
    pull_request: str
    head_commit: str | None
    base_branch: str | None
    action: str
    sender: str | None
    delivery_id: str | None
    url: str | None
    # Set only for explicit review commands: each command asks for its own review.
    command_id: str | None = None
    # The tenant (docs/architecture.md §2.4): kept on the job itself, not in `as_dict`.
    organization: str | None = None
    team: str | None = None
    # Set for a review started through the API: the key its caller gave (`started_key`).
    started_as: str | None = None

    @property
    def key(self) -> str:
        """The idempotency key, so a redelivered webhook lands on the same job."""
        if self.started_as is not None:
            return self.started_as
        key = f"{self.platform}:{self.repository}:{self.pull_request}:{self.head_commit or ''}"
        return key if self.command_id is None else f"{key}:{self.command_id}"

    def as_dict(self, received_at: datetime) -> dict[str, Any]:
        """The trigger as stored on the job: JSON values only, time as ISO 8601 UTC."""
        return {
            "platform": self.platform,
            "repository": self.repository,
            "pull_request": self.pull_request,
            "head_commit": self.head_commit,
            "base_branch": self.base_branch,
            "action": self.action,
            "sender": self.sender,
            "delivery_id": self.delivery_id,
            "received_at": received_at.astimezone(UTC).isoformat(),
            "url": self.url,
        }


@dataclass(frozen=True)
class Duplicate:
    """The trigger asks for a review the pull request already has: job `job_id`."""

    job_id: uuid.UUID


@dataclass(frozen=True)
class NewReview:
    """A review to start under `key`, superseding the pull request's live one, if any."""

    key: str
    trigger: Trigger
    supersedes: str | None

    @property
    def job_id(self) -> uuid.UUID:
        return job_id_for(self.key)


def decide_review(pr: PullRequest | None, trigger: Trigger) -> Duplicate | NewReview:
    """What `trigger` asks of the pull request `pr` (None: one never recorded)."""
    if pr is None:
        return NewReview(trigger.key, trigger, supersedes=None)
    key = pr.review_key(trigger.key, trigger.action, trigger.delivery_id)
    if pr.has_requested(job_id_for(key)):
        return Duplicate(job_id_for(key))
    if trigger.head_commit is None and pr.head is not None:
        # A review command that does not name a commit reviews the known head.
        trigger = replace(trigger, head_commit=pr.head)
    return NewReview(key, trigger, supersedes=pr.review)


class PullRequestError(ConveyorError):
    """Base of the pull request's domain errors."""


class ReviewAlreadyRequestedError(PullRequestError):
    """Raised when a job is requested twice for one pull request; nothing is appended."""


class PullRequestClosedError(PullRequestError):
    """Raised when a pull request already closed or merged is closed again."""
