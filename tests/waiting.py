"""Waiting on a condition with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def in_plan_order(stages: list[str], plan: list[list[str]]) -> bool:
    """Whether `stages` ran step by step through `plan`, in any order within a step."""
    position = 0
    for step in plan:
        if sorted(stages[position:position + len(step)]) != sorted(step):
            return False
        position += len(step)
    return position == len(stages)


def wait_until(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Return the condition's first truthy value; fail if none comes before the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)
