"""Answers trusted for a while: one process's cache of what another store said."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TimedCache(Generic[K, V]):
    """Each key's answer, found or not, trusted for `ttl` seconds; emptied past `entries`."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic,
                 entries: int = 10_000) -> None:
        self.ttl = ttl
        self.clock = clock
        self.entries = entries
        self._answers: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, load: Callable[[], V]) -> V:
        """The answer for `key`: remembered if younger than the TTL, else `load()`ed now."""
        now = self.clock()
        cached = self._answers.get(key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        value = load()
        with self._lock:
            if len(self._answers) >= self.entries:
                self._answers.clear()
            self._answers[key] = (now, value)
        return value
