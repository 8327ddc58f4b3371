"""Freeze a worker, the relay, the projector and one webhook process in turn, mid-load.

Every event insert holds the events table's EXCLUSIVE lock until it commits, so a process
frozen inside a transaction would stall every other writer. Conveyor bounds its sessions
(`conveyor.settings.SessionBounds`): the server ends a transaction idle for a second, and the
woken process reconnects. Here each victim is frozen for 30 s while deliveries go on to a
webhook process that is not frozen; its answers must stay under a second at p99 throughout.

A freeze only bites if it lands inside a transaction, which is a few milliseconds out of
every commit. So the victim is frozen (SIGSTOP of its process group), its sessions are
looked up in `pg_stat_activity` by their client ports, and if none is `idle in transaction`
it is woken after a few milliseconds and frozen again, until one is caught or a deadline
passes. How often that took, and whether the caught session held the events table's lock,
is reported. The relay and the projector write in transactions (a batch, a page), and must
be caught inside one. A worker's and a webhook's writes are single statements (an append
through `conveyor_append_events`, a lease), so no freeze can land inside a transaction of
theirs: they are frozen all the same, just as long. No caught session may hold the events
table's lock: every append is one statement, which the server finishes without its client.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from conveyor.application import Jobs
from conveyor.settings import Settings
from tests.deliveries import github_pull_request
from tests.e2e.stack import free_port, request
from tests.faults.audit import audit, report
from tests.faults.cluster import Cluster, Process
from tests.faults.load import Load
from tests.faults.services import timed
from tests.waiting import wait_until

FREEZE_SECONDS = 30.0
CATCH_DEADLINE_SECONDS = 20.0
P99_BOUND_SECONDS = 1.0
# RabbitMQ notices a frozen worker by its missed heartbeats and hands its messages on.
HEARTBEAT = "?heartbeat=2"

IN_TRANSACTION = """
SELECT a.pid, EXISTS (
    SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted AND l.mode = 'ExclusiveLock'
      AND l.relation = 'jobs_events'::regclass)
FROM pg_stat_activity a
WHERE a.client_port = ANY(%s) AND a.state = 'idle in transaction'
"""


@pytest.fixture
def settings(private_settings: Settings) -> Settings:
    """Private servers: a p99 bound and a pile of waiting sessions must not depend on, or
    exhaust, the connection slots of the machine's server that other tests share."""
    return private_settings


@dataclass
class Deliveries:
    """A thread posting signed deliveries to one webhook process, one after another."""

    base: str
    first: int
    interval: float = 0.05
    answers: list[tuple[float, int, float]] = field(default_factory=list)
    accepted: list[UUID] = field(default_factory=list)
    unanswered: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Deliveries:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)

    def post(self, number: int) -> tuple[int, Any, float]:
        sent = github_pull_request("opened", number=number)
        return timed(f"{self.base}{sent.path}", sent.body, sent.headers)

    def _run(self) -> None:
        n = self.first
        while not self._stop.wait(self.interval):
            n += 1
            began = time.monotonic()
            try:
                status, body, took = self.post(n)
            except OSError as error:  # no answer within the client's 10 s
                self.unanswered[type(error).__name__] += 1
                continue
            self.answers.append((began, status, took))
            if status == 202:
                self.accepted.append(UUID(body["job_id"]))


def group_pids(pgid: int) -> list[int]:
    """Every process of a process group (a `conveyor` command and its children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                found.append(int(entry))
    return found


def client_ports(pids: list[int]) -> list[int]:
    """The local TCP ports of the sockets these processes hold (their database sessions)."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass
class Caught:
    """How a freeze landed: after how many tries, and inside what."""

    tries: int
    in_transaction: bool
    held_events_lock: bool

    def __str__(self) -> str:
        if not self.in_transaction:
            return f"not caught in a transaction in {self.tries} tries"
        lock = ", holding the events lock" if self.held_events_lock else ""
        return f"caught in a transaction after {self.tries} tries{lock}"


def freeze_in_transaction(probe: psycopg.Connection[Any], victim: Process,
                          rng: random.Random) -> Caught:
    """SIGSTOP the victim's group, retrying until one of its sessions is idle in a transaction.

    Past the deadline the victim stays frozen anyway, caught or not.
    """
    deadline = time.monotonic() + CATCH_DEADLINE_SECONDS
    tries = 0
    while True:
        tries += 1
        os.killpg(victim.pid, signal.SIGSTOP)
        rows = probe.execute(IN_TRANSACTION, (client_ports(group_pids(victim.pid)),)).fetchall()
        if rows or time.monotonic() > deadline:
            return Caught(tries, bool(rows), any(row[1] for row in rows))
        os.killpg(victim.pid, signal.SIGCONT)
        time.sleep(rng.uniform(0.001, 0.03))


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_a_process_frozen_mid_transaction_stalls_no_other_webhook_and_loses_nothing(
    faulty: Cluster, jobs: Jobs,
) -> None:
    # Given the whole topology with two workers and a second webhook process, under load
    began = time.monotonic()
    victim_port = free_port()
    victim_base = f"http://127.0.0.1:{victim_port}"
    relay, projector = faulty.add("relay"), faulty.add("projector")
    worker = faulty.add("worker-a", "worker",
                        CONVEYOR_AMQP_URL=faulty.settings.amqp_url + HEARTBEAT)
    faulty.add("worker-b", "worker", CONVEYOR_AMQP_URL=faulty.settings.amqp_url + HEARTBEAT)
    faulty.add("webhooks")
    webhook = faulty.add("webhooks-b", "webhooks",
                         CONVEYOR_WEBHOOKS_BIND=f"127.0.0.1:{victim_port}")
    faulty.wait_http("webhooks")
    wait_until(lambda: _answers(victim_base), timeout=30, interval=0.1)

    rng = random.Random(11)
    caught: dict[str, Caught] = {}
    recovered: dict[str, float] = {}
    frozen_p99: dict[str, float] = {}
    with psycopg.connect(faulty.url, autocommit=True) as probe, \
            Load(faulty, jobs, "frozen", interval=0.2) as load, \
            Deliveries(faulty.webhooks, 100_000) as steady, \
            Deliveries(victim_base, 200_000, interval=0.05) as victimised:
        relay_mark = [0]
        checks: dict[str, Callable[[int], bool]] = {
            # Each check says the woken process is doing its work again.
            "worker": lambda offset: "run_stage" in worker.log.read_text()[offset:],
            "relay": lambda _: _dispatches_after(faulty, relay_mark[0]),
            "projector": lambda _: _projected_to_head(faulty),
            "webhooks": lambda _: victimised.post(300_000 + rng.randrange(10**6))[0] in (200, 202),
        }
        wait_until(lambda: len(steady.accepted) > 20, timeout=60, interval=0.1)
        for name, victim in (("worker", worker), ("relay", relay), ("projector", projector),
                             ("webhooks", webhook)):
            # When the victim is frozen inside a transaction for 30 s
            caught[name] = freeze_in_transaction(probe, victim, rng)
            frozen_at = time.monotonic()
            relay_mark[0] = faulty.terminal_jobs()
            time.sleep(FREEZE_SECONDS)  # the fault's length, not a synchronisation
            offset = len(victim.log.read_text())
            os.killpg(victim.pid, signal.SIGCONT)
            woken_at = time.monotonic()
            frozen_p99[name] = p99([took for at, _, took in steady.answers
                                    if frozen_at <= at < woken_at] or [0.0])

            # Then, woken, it recovers and goes on
            check = checks[name]
            wait_until(lambda: check(offset), timeout=60, interval=0.2)  # noqa: B023
            recovered[name] = time.monotonic() - woken_at
            assert victim.alive(), f"{name} died after its freeze:\n{victim.tail()}"
        accepted = load.accepted + steady.accepted + victimised.accepted

    # Then no other webhook answer was slow, every accepted job finished, once
    latencies = [took for _, _, took in steady.answers]
    statuses = Counter(status for _, status, _ in steady.answers)
    assert not steady.unanswered, f"unanswered deliveries: {steady.unanswered}"
    assert set(statuses) <= {202, 503}, statuses
    assert p99(latencies) < P99_BOUND_SECONDS, (p99(latencies), frozen_p99)
    assert caught["relay"].in_transaction and caught["projector"].in_transaction, caught
    assert not any(c.held_events_lock for c in caught.values()), caught
    wait_until(lambda: _all_terminal(faulty, accepted), timeout=180, interval=1.0)
    found = audit(faulty, jobs, accepted)
    assert set(found.statuses) <= {"COMPLETED"}, found.statuses
    assert all(p.alive() for p in faulty.processes.values())
    report(
        f"frozen writers: each frozen {FREEZE_SECONDS:.0f}s mid-load;"
        f" {', '.join(f'{n} {c}' for n, c in caught.items())};"
        f" the other webhook process answered {len(latencies)} deliveries {dict(statuses)},"
        f" p50 {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms, p99"
        f" {p99(latencies) * 1000:.0f} ms overall, p99 while frozen"
        f" {', '.join(f'{n} {v * 1000:.0f} ms' for n, v in frozen_p99.items())};"
        f" recovered after waking {', '.join(f'{n} {v:.1f}s' for n, v in recovered.items())};"
        f" frozen webhook process: {len(victimised.accepted)} accepted,"
        f" {sum(victimised.unanswered.values())} unanswered while frozen; {len(accepted)} jobs"
        f" {dict(found.statuses)}, versions contiguous, effects once;"
        f" {time.monotonic() - began:.0f}s"
    )


def _answers(base: str) -> bool:
    try:
        return request(f"{base}/health/live")[0] == 200
    except OSError:
        return False


def _dispatches_after(cluster: Cluster, terminal_before: int) -> bool:
    # The relay is the only dispatcher: jobs finishing again means it relays again.
    return cluster.terminal_jobs() > terminal_before + 5


def _projected_to_head(cluster: Cluster) -> bool:
    head = cluster.count("SELECT coalesce(max(notification_id), 0) FROM jobs_events")
    tracked = cluster.count("SELECT coalesce(max(notification_id), 0) FROM jobs_tracking")
    return tracked >= head - 50


def _all_terminal(cluster: Cluster, job_ids: list[UUID]) -> bool:
    done = cluster.count(
        "SELECT count(DISTINCT originator_id) FROM jobs_events WHERE originator_id = ANY(%s)"
        " AND topic ~ ':Job\\.(Completed|Failed|Cancelled)$'", (job_ids,))
    return done == len(set(job_ids))
