"""Fair dispatch: which held stage attempts the relay sends next (docs/architecture.md §3.7).

Pure bookkeeping, no I/O: the relay tells it what became ready (`hold`), what it
learnt ended (`end`), and asks what to send now (`release`), given each tenant's
limit and priority and the global window. Its state is rebuilt from `relay_dispatches`
(`conveyor/store/dispatches.py`) whenever a relay becomes active.

Across organisations it is stride scheduling, a weighted round robin: each turn goes to
the eligible organisation with the smallest pass, whose pass then moves on by
1/weight, the weight being its priority. An organisation that had nothing held starts
at the current pass, so idling banks no credit and a burst from one cannot delay the
others: B's first dispatch goes out within one turn of every organisation with work.
Within an organisation, the attempt with the highest priority goes first, aged by its
wait (`AGEING_PER_SECOND` points a second), so a low-priority job passes any number of
later high-priority ones after at most (difference / ageing) seconds. The ageing is
not applied across organisations: there it would hand the turns to whichever burst has
waited longest, which is what fairness must prevent, and stride scheduling already
gives every organisation with a weight its share.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

# Points of priority a held attempt gains per second of waiting (priorities are 1 to 100):
# a priority-1 attempt goes before a fresh priority-100 one of its tenant after 99 s.
AGEING_PER_SECOND = 1.0

__all__ = ["AGEING_PER_SECOND", "Dispatch", "FairQueue", "Key", "Limits"]


class Key(NamedTuple):
    """One stage attempt."""

    job_id: UUID
    stage: str
    attempt: int


@dataclass(frozen=True)
class Dispatch:
    """A stage attempt made ready: its tenant, the job's own priority (0: its tenant's)."""

    key: Key
    organization: str
    priority: int
    held_at: datetime


class Limits(NamedTuple):
    """What the relay asks of a tenant: how many may run (None: no limit), its weight."""

    max_running: int | None
    priority: int


class FairQueue:
    """Held attempts by organisation, attempts in flight, and whose turn it is."""

    def __init__(self, ageing_per_second: float = AGEING_PER_SECOND) -> None:
        self.ageing = ageing_per_second
        self._held: dict[Key, Dispatch] = {}
        # Per organisation, a heap of (rank, sequence, key); ended keys are skipped lazily.
        self._heaps: dict[str, list[tuple[float, int, Key]]] = {}
        self._held_count: Counter[str] = Counter()
        self._in_flight: dict[Key, str] = {}
        self._by_job: dict[UUID, set[Key]] = {}
        self._running: Counter[str] = Counter()
        self._pass: dict[str, float] = {}
        self._now_pass = 0.0
        self._sequence = itertools.count()

    # What the relay tells it ----------------------------------------------------

    def hold(self, dispatch: Dispatch) -> bool:
        """Queue a ready attempt; False if it is already held or in flight."""
        key = dispatch.key
        if key in self._held or key in self._in_flight:
            return False
        org = dispatch.organization
        if self._held_count[org] == 0:
            # Back from idle: from the current pass, with no credit for the idle time.
            self._pass[org] = max(self._pass.get(org, 0.0), self._now_pass)
        self._held[key] = dispatch
        self._held_count[org] += 1
        self._by_job.setdefault(key.job_id, set()).add(key)
        rank = self.ageing * dispatch.held_at.timestamp() - dispatch.priority
        heapq.heappush(self._heaps.setdefault(org, []), (rank, next(self._sequence), key))
        return True

    def sent(self, key: Key, organization: str) -> None:
        """Count an attempt as in flight (a relay rebuilding its state from the table)."""
        if key not in self._in_flight:
            self._in_flight[key] = organization
            self._running[organization] += 1
            self._by_job.setdefault(key.job_id, set()).add(key)

    def end(self, key: Key) -> bool:
        """Forget an attempt whose outcome (or whose job's end) was relayed; True if known."""
        keys = self._by_job.get(key.job_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_job[key.job_id]
        org = self._in_flight.pop(key, None)
        if org is not None:
            self._running[org] -= 1
            return True
        dispatch = self._held.pop(key, None)
        if dispatch is None:
            return False
        self._held_count[dispatch.organization] -= 1
        return True

    def keys_of(self, job_id: UUID) -> list[Key]:
        """The attempts of a job held or in flight."""
        return list(self._by_job.get(job_id, ()))

    # What it answers ----------------------------------------------------------

    def release(self, limits: Callable[[str], Limits], window: int | None) -> list[Dispatch]:
        """Take the held attempts to send now, in turn, within every limit; they are in flight.

        `window` bounds the attempts in flight in total (None: no bound).
        """
        released: list[Dispatch] = []
        known = {org: limits(org) for org, count in self._held_count.items() if count > 0}
        while window is None or len(self._in_flight) < window:
            org = self._next_turn(known)
            if org is None:
                break
            dispatch = self._pop(org)
            weight = max(known[org].priority, dispatch.priority, 1)
            self._now_pass = self._pass[org]
            self._pass[org] += 1.0 / weight
            self._in_flight[dispatch.key] = org
            self._running[org] += 1
            released.append(dispatch)
        return released

    def _next_turn(self, known: dict[str, Limits]) -> str | None:
        best: str | None = None
        for org, limit in known.items():
            if self._held_count[org] == 0:
                continue
            if limit.max_running is not None and self._running[org] >= limit.max_running:
                continue
            if best is None or (self._pass[org], org) < (self._pass[best], best):
                best = org
        return best

    def _pop(self, org: str) -> Dispatch:
        heap = self._heaps[org]
        while True:
            _, _, key = heapq.heappop(heap)
            dispatch = self._held.pop(key, None)
            if dispatch is not None:
                self._held_count[org] -= 1
                return dispatch

    # What it shows ------------------------------------------------------------

    def running(self, organization: str) -> int:
        return self._running[organization]

    def held(self, organization: str) -> int:
        return self._held_count[organization]

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def organizations(self) -> Iterable[str]:
        return {org for org, n in self._held_count.items() if n} | set(self._in_flight.values())
