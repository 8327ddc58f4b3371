"""Group commit: what a process's threads ask to save at the same moment, saved in one go.

Every insert into the event store takes one table lock until its commit, so a worker's
threads finishing stages together queue on that lock one commit at a time. One thread
per process that gathers their requests for a couple of milliseconds and saves them
together turns N lock waits and N flushes into one; each thread still gets its own answer.
A dedicated thread rather than a leader chosen among the callers: Dramatiq interrupts a
worker thread that overruns its time limit, and an interrupted leader would strand the
batch it gathered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from queue import Empty, SimpleQueue
from threading import Lock, Thread
from typing import Generic, TypeVar

R = TypeVar("R")
A = TypeVar("A")

Commit = Callable[[Sequence[R]], Sequence[A | Exception]]


class GroupCommit(Generic[R, A]):
    """Calls `commit` once for the requests submitted within `window` seconds (`limit` at most).

    `commit(requests)` answers each request in order, with a value or an exception that
    is raised in that request's thread. While one batch commits, the next one gathers.

    Callers that say when they are working towards a request (`busy()`) spare the wait:
    a batch closes as soon as every busy caller has submitted, so a lone request commits
    at once, as PostgreSQL's `commit_delay` waits only while `commit_siblings` are active.
    """

    def __init__(self, commit: Commit[R, A], *, window: float, limit: int, name: str) -> None:
        self.commit = commit
        self.window = window
        self.limit = limit
        self.name = name
        self._requests: SimpleQueue[tuple[R, Future[A]] | None] = SimpleQueue()
        self._thread: Thread | None = None
        self._lock = Lock()
        self._busy = 0  # callers inside `busy()`: each will submit, or leave

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Around the work that ends in `submit`: the batch it joins need not wait for more."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1

    def submit(self, request: R) -> A:
        """Wait until `request` is committed with others, and return its own answer."""
        answer: Future[A] = Future()
        self._requests.put((request, answer))
        with self._lock:
            if self._thread is None:  # started on first use, in the process that uses it
                self._thread = Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        return answer.result()

    def close(self) -> None:
        """Commit what was submitted, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._requests.put(None)
            thread.join()

    def _run(self) -> None:
        while (first := self._requests.get()) is not None:
            batch, closing = self._gather(first)
            self._commit(batch)
            if closing:
                return

    def _gather(self, first: tuple[R, Future[A]]) -> tuple[list[tuple[R, Future[A]]], bool]:
        batch = [first]
        deadline = time.monotonic() + self.window
        while len(batch) < self.limit and not 0 < self._busy <= len(batch):
            try:
                item = self._requests.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(self, batch: list[tuple[R, Future[A]]]) -> None:
        try:
            answers = self.commit([request for request, _ in batch])
        except BaseException as error:  # the thread outlives any one batch's failure
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
