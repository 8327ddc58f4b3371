"""What a review trigger means for its pull request: a new review, a duplicate, a supersession."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from conveyor.aggregates import (
    Duplicate,
    NewReview,
    PullRequest,
    Trigger,
    decide_review,
    job_id_for,
)

AT = datetime(2030, 1, 1, tzinfo=UTC)
PUSH = Trigger(platform="github", repository="acme/api", pull_request="7", head_commit="a" * 40,
               base_branch="main", action="opened", sender="ada", delivery_id="d1", url=None)


def reviewed(*triggers: Trigger) -> PullRequest:
    """A pull request whose reviews the triggers requested, in order."""
    pr = PullRequest("github", "acme/api", "7")
    for trigger in triggers:
        pr.request_review(job_id_for(trigger.key), trigger.head_commit, trigger.action, AT)
    return pr


def test_a_pull_request_never_recorded_gets_a_new_review_that_supersedes_nothing() -> None:
    assert decide_review(None, PUSH) == NewReview(PUSH.key, PUSH, supersedes=None)


def test_a_new_head_supersedes_the_live_review() -> None:
    pushed = replace(PUSH, head_commit="b" * 40, action="updated", delivery_id="d2")

    decision = decide_review(reviewed(PUSH), pushed)

    assert decision == NewReview(pushed.key, pushed, supersedes=str(job_id_for(PUSH.key)))


def test_a_re_delivered_old_push_is_a_duplicate_of_its_superseded_review() -> None:
    newer = replace(PUSH, head_commit="b" * 40, action="updated", delivery_id="d2")

    assert decide_review(reviewed(PUSH, newer), PUSH) == Duplicate(job_id_for(PUSH.key))


def test_a_review_command_naming_no_commit_reviews_the_known_head() -> None:
    command = replace(PUSH, head_commit=None, action="command", command_id="c1")

    decision = decide_review(reviewed(PUSH), command)

    assert isinstance(decision, NewReview)
    assert decision.key == command.key  # the key is the command's own, not the head's
    assert decision.trigger.head_commit == PUSH.head_commit


def test_reopening_a_closed_pull_request_asks_for_a_fresh_review_of_the_same_commit() -> None:
    pr = reviewed(PUSH)
    pr.close(reason="closed", by="ada", at=AT)
    reopened = replace(PUSH, action="reopened", delivery_id="d9")

    decision = decide_review(pr, reopened)

    assert decision == NewReview(f"{PUSH.key}:reopened:d9", reopened,
                                 supersedes=str(job_id_for(PUSH.key)))
