"""A workflow's declared input shape: what passes, and the field a refusal names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

import pytest

from conveyor.aggregates import started_key
from conveyor.workflows.code_review import ReviewInput
from conveyor.workflows.inputs import InvalidInputError, check_input


@dataclass
class Inner:
    n: int


@dataclass
class Order:
    name: str
    amount: float
    inner: Inner
    tags: list[str] = field(default_factory=list)
    mode: Literal["fast", "slow"] = "fast"
    note: str | None = None


class Options(TypedDict):
    x: str
    counts: NotRequired[dict[str, int]]


VALID = {"name": "n", "amount": 1, "inner": {"n": 2}}


@pytest.mark.parametrize(("shape", "value"), [
    (Order, VALID),
    (Order, {**VALID, "amount": 1.5, "tags": ["a"], "mode": "slow", "note": None}),
    (Options, {"x": "a"}),
    (Options, {"x": "a", "counts": {"k": 1}}),
    (ReviewInput, {"platform": "github", "repository": "a/b", "pull_request": "1",
                   "head_commit": "abc"}),
    (None, {"anything": [1, {"goes": None}]}),
])
def test_a_matching_input_passes(shape: type | None, value: Any) -> None:
    check_input(shape, value)


@pytest.mark.parametrize(("shape", "value", "message"), [
    (Order, {"name": "n", "amount": 1}, "'input.inner' is required."),
    (Order, {**VALID, "amount": True}, "'input.amount' must be a number."),
    (Order, {**VALID, "inner": {"n": "2"}}, "'input.inner.n' must be an integer."),
    (Order, {**VALID, "tags": ["a", 2]}, "'input.tags[1]' must be a string."),
    (Order, {**VALID, "mode": "medium"}, "'input.mode' must be one of ['fast', 'slow']."),
    (Order, {**VALID, "note": 3}, "'input.note' must be a string or null."),
    (Order, {**VALID, "extra": 1}, "'input.extra' is not a field of this input."),
    (Options, {"counts": {}}, "'input.x' is required."),
    (Options, {"x": "a", "counts": {"k": "v"}}, "'input.counts.k' must be an integer."),
    (ReviewInput, {"platform": "github", "repository": "a/b", "pull_request": 1,
                   "head_commit": "abc"}, "'input.pull_request' must be a string."),
    (None, [1], "'input' must be a JSON object."),
    (None, {"a": ["x\x00"]}, "'input.a[0]' must not contain a NUL character."),
])
def test_a_mismatch_is_refused_naming_the_field(shape: type | None, value: Any,
                                                message: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        check_input(shape, value)
    assert str(refused.value) == message


def test_a_started_key_is_its_workflows_and_organisations_and_never_a_webhooks() -> None:
    assert started_key("w", "acme", "k") != started_key("w", "other", "k")
    assert started_key("w", None, "k") != started_key("v", None, "k")
    assert started_key("w", "a:b", "c") != started_key("w", "a", "b:c")
    assert started_key("w", None, "k").startswith("api:")
