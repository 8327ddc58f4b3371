"""Group commit: requests submitted together are committed in one call, each answered alone."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from conveyor.group_commit import GroupCommit


class Recorder:
    """A commit that records each call's batch and answers each request on its own."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, requests: Sequence[int]) -> list[str | Exception]:
        self.calls.append(list(requests))
        return [ValueError(f"odd {r}") if r % 2 else f"saved {r}" for r in requests]


def submit_together(group: GroupCommit[int, str], requests: list[int]) -> list[str | Exception]:
    barrier = Barrier(len(requests))

    def submit(request: int) -> str | Exception:
        barrier.wait()
        try:
            return group.submit(request)
        except ValueError as error:
            return error

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(submit, requests))


def test_requests_submitted_together_are_committed_in_one_call_and_each_gets_its_answer() -> None:
    # Given a group commit that waits long enough to gather eight threads' requests
    commit = Recorder()
    group = GroupCommit(commit, window=5.0, limit=8, name="test")

    # When eight threads submit at the same moment
    answers = submit_together(group, list(range(8)))
    group.close()

    # Then one commit call saved all eight, and each thread got its own answer or error
    assert [sorted(batch) for batch in commit.calls] == [list(range(8))]
    assert [a if isinstance(a, str) else str(a) for a in answers] == [
        "saved 0", "odd 1", "saved 2", "odd 3", "saved 4", "odd 5", "saved 6", "odd 7"]


def test_a_batch_closes_at_its_limit_without_waiting_out_the_window() -> None:
    # Given a window far longer than the test's time limit, and a limit of two
    commit = Recorder()
    group = GroupCommit(commit, window=3600.0, limit=2, name="test")

    # When two requests arrive, then two more
    first = submit_together(group, [0, 2])
    second = submit_together(group, [4, 6])
    group.close()

    # Then each pair was committed as soon as it was complete
    assert first == ["saved 0", "saved 2"] and second == ["saved 4", "saved 6"]
    assert [sorted(batch) for batch in commit.calls] == [[0, 2], [4, 6]]


def test_a_commit_that_raises_fails_its_batch_and_the_next_batch_still_commits() -> None:
    # Given a commit that fails once, as a lost database connection would
    calls: list[Sequence[int]] = []

    def commit(requests: Sequence[int]) -> list[str | Exception]:
        calls.append(requests)
        if len(calls) == 1:
            raise ConnectionError("database unreachable")
        return [f"saved {r}" for r in requests]

    group = GroupCommit(commit, window=0.0, limit=8, name="test")

    # When a request is submitted during the failure, and another after it
    with pytest.raises(ConnectionError):
        group.submit(1)
    answer = group.submit(2)
    group.close()

    # Then the first caller saw the failure, and the committer went on with the second
    assert answer == "saved 2"



def test_a_lone_busy_caller_commits_at_once_instead_of_waiting_out_the_window() -> None:
    # Given a window far longer than the test's time limit
    commit = Recorder()
    group = GroupCommit(commit, window=3600.0, limit=8, name="test")
    try:
        # When the only caller at work submits
        with group.busy():
            answer = group.submit(2)
        # Then its request was committed alone, at once
        assert answer == "saved 2"
        assert commit.calls == [[2]]
    finally:
        group.close()


def test_a_batch_waits_for_every_busy_caller_and_no_longer() -> None:
    # Given two callers at work and a window far longer than the test's time limit
    commit = Recorder()
    group = GroupCommit(commit, window=3600.0, limit=8, name="test")
    barrier = Barrier(2)

    def work(request: int) -> str | Exception:
        with group.busy():
            barrier.wait()  # both are busy before either submits
            try:
                return group.submit(request)
            except ValueError as error:
                return error

    try:
        # When both submit
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(work, [2, 3]))
        # Then one commit held both, without waiting out the window for a third
        assert [str(a) for a in answers] == ["saved 2", "odd 3"]
        assert [sorted(call) for call in commit.calls] == [[2, 3]]
    finally:
        group.close()
