"""What a delivery means once verified: a trigger for a review, or a reason to do nothing.

Every platform's payload becomes the same `Trigger` (a plain value of the domain, in
`conveyor.aggregates.pull_request`), so the workflow never reads a platform's JSON.
Actions are normalised to one vocabulary:

- `opened`, `reopened`: the pull request was opened or reopened;
- `updated`: new commits were pushed to its source branch;
- `ready`: a draft was marked ready for review;
- `command`: someone asked for a review with the review command in a comment.

A pull request closed or merged becomes a `Closing`, which cancels its running review.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.aggregates import Trigger

__all__ = ["Closing", "Ignored", "Outcome", "Pong", "Trigger"]


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
