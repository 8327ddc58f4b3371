"""What a delivery means once verified: a trigger for a review, or a reason to do nothing.

Every platform's payload becomes the same `Trigger`, so the workflow never reads a
platform's JSON. Actions are normalised to one vocabulary:

- `opened`, `reopened`: the pull request was opened or reopened;
- `updated`: new commits were pushed to its source branch;
- `ready`: a draft was marked ready for review;
- `command`: someone asked for a review with the review command in a comment.

A pull request closed or merged becomes a `Closing`, which cancels its running review.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Trigger:
    """A delivery that asks for a code review, in platform-neutral plain values."""

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

    @property
    def key(self) -> str:
        """The idempotency key, so a redelivered webhook lands on the same job."""
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
class Closing:
    """A delivery saying a pull request was closed or merged, so its review is moot."""

    platform: str
    repository: str
    pull_request: str
    # "closed" or "merged": the reason the running review is cancelled with.
    reason: str
    sender: str | None
    delivery_id: str | None


@dataclass(frozen=True)
class Ignored:
    """A genuine delivery that starts no work, with the reason the sender is told."""

    reason: str


@dataclass(frozen=True)
class Pong:
    """A platform's connectivity check, answered without starting work."""


Outcome = Trigger | Closing | Ignored | Pong
