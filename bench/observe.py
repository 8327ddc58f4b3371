"""What `bench.peers` watches from outside Conveyor: commits, transactions, memory and CPU."""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg


class CommitWatch:
    """When each stored event became visible, told by the store's own NOTIFY.

    On each notification on `jobs_events` it reads the highest notification id. The
    recorder inserts under an exclusive table lock, so ids commit in order and every id
    up to that one is committed. The time is taken when the answer arrives: an upper
    bound on the commit, late by one round trip (`round_trips`).
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.seen: list[tuple[int, float]] = []
        self.round_trips: list[float] = []
        self.transactions = 0
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self._listening.wait(10)

    def _watch(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute("LISTEN jobs_events")
            self.transactions += 1
            self._listening.set()
            while not self._stopping.is_set():
                if not any(True for _ in conn.notifies(timeout=0.2, stop_after=1)):
                    continue
                asked = time.time()
                row = conn.execute("SELECT max(notification_id) FROM jobs_events").fetchone()
                answered = time.time()
                self.transactions += 1
                self.round_trips.append(answered - asked)
                if row and row[0] is not None and (not self.seen or row[0] > self.seen[-1][0]):
                    self.seen.append((int(row[0]), answered))

    def stored_at(self, notification_id: int) -> float | None:
        """When the event with this id was first seen committed, if it was."""
        i = bisect.bisect_left(self.seen, (notification_id, 0.0))
        return self.seen[i][1] if i < len(self.seen) else None

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)


def xact_commit(database_url: str) -> int:
    """The database's committed transactions so far (this read commits one more)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database"
                           " WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Process:
    ppid: int
    cmdline: str
    rss_kb: int
    cpu_ticks: int  # user + system, in clock ticks


TICK = 1 / os.sysconf("SC_CLK_TCK")


def process_table() -> dict[int, Process]:
    """Every process this user can read: parent, command line and resident kB (VmRSS)."""
    table: dict[int, Process] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = dict(line.split(":", 1) for line in
                          (entry / "status").read_text().splitlines() if ":" in line)
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        rss = status.get("VmRSS", "0 kB").split()[0]
        table[int(entry.name)] = Process(int(status["PPid"]), cmdline, int(rss),
                                         int(stat[11]) + int(stat[12]))
    return table


def tree(table: Mapping[int, Process], root: int) -> list[int]:
    """The pids of `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, process in table.items():
        children.setdefault(process.ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_rss_kb(table: Mapping[int, Process], root: int) -> int:
    """Resident kB of `root` and all its descendants."""
    return sum(table[pid].rss_kb for pid in tree(table, root))


def own_cpu_seconds() -> float:
    """CPU seconds this process has used so far (the bench's own client)."""
    times = os.times()
    return times.user + times.system


def cpu_seconds(roots: Mapping[str, int], database: str) -> dict[str, float]:
    """CPU seconds used so far by each named process tree, and by `postgres`: the
    PostgreSQL backends serving `database` (their command line names it)."""
    table = process_table()
    used = {name: TICK * sum(table[pid].cpu_ticks for pid in tree(table, root))
            for name, root in roots.items()}
    used["postgres"] = TICK * sum(p.cpu_ticks for p in table.values()
                                  if p.cmdline.startswith("postgres:")
                                  and f" {database} " in p.cmdline)
    return used


def pss_kb(pid: int) -> int:
    """The process's proportional set size: its resident pages, each page shared with
    other processes (a forked child's, a library's) counted as its share only."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemoryPeaks:
    """Peak resident MiB of each named process tree, and the peak of all of them together
    counted without sharing (PSS), sampled every `every` seconds."""

    def __init__(self, roots: Mapping[str, int], every: float = 0.5) -> None:
        self.roots = dict(roots)
        self.peaks = dict.fromkeys(self.roots, 0.0)
        self.pss_peak = 0.0
        self.every = every
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stopping.wait(self.every):
            table = process_table()
            pss = 0
            for name, root in self.roots.items():
                self.peaks[name] = max(self.peaks[name], tree_rss_kb(table, root) / 1024)
                pss += sum(pss_kb(pid) for pid in tree(table, root))
            self.pss_peak = max(self.pss_peak, pss / 1024)

    def stop(self) -> dict[str, float]:
        self._stopping.set()
        self._thread.join(timeout=5)
        return self.peaks
