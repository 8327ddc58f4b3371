"""A burst's stored events read back as timelines: completions, dispatch latency and hops."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.utils import get_topic

from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.projections.runner import PROJECTIONS
from conveyor.settings import postgres_env

# One job's (notification id, event) pairs, in the order they were stored.
Stream = list[tuple[int, Any]]
FINISHED = [get_topic(Job.Completed), get_topic(Job.Failed), get_topic(Job.Cancelled)]

# A stage's hops, from its `bench.noop_workflow` output and the times the events were
# seen stored; "before" is the event that made the stage ready (Enqueued or the
# previous stage's StageCompleted).
HOPS: dict[str, Callable[[dict[str, float | None]], float | None]] = {
    "before stored → next message built (relay noticing and deciding)":
        lambda t: _gap(t["before_stored"], t["published"]),
    "message built → taken by a worker thread (publish, confirm, queue, prefetch)":
        lambda t: _gap(t["published"], t["picked"]),
    "taken → Started.at (loading the job)": lambda t: _gap(t["picked"], t["started"]),
    "Started.at → handler entered (taking the lease)":
        lambda t: _gap(t["started"], t["entered"]),
    "the handler (no-op)": lambda t: _gap(t["entered"], t["left"]),
    "handler left → outcome seen stored (StageCompleted, save, commit)":
        lambda t: _gap(t["left"], t["stored"]),
    "before stored → Started.at (handler start vs the previous event's store time)":
        lambda t: _gap(t["before_stored"], t["started"]),
}


def _gap(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def last_notification_id(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM jobs_events").fetchone()
    return int(row[0]) if row else 0


def wait_finished(database_url: str, after: int, n: int, timeout: float = 900) -> int:
    """Wait until `n` jobs stored after `after` have finished and the relay and every
    projection have caught up with the log; return the queries it took."""
    trackers = ", ".join(f"(SELECT max(notification_id) FROM {name}_tracking)"
                         for name in ("relay", *PROJECTIONS))
    query = ("SELECT (SELECT count(*) FROM jobs_events WHERE notification_id > %s"
             " AND topic = ANY(%s)), (SELECT coalesce(max(notification_id), 0)"
             f" FROM jobs_events) <= least({trackers})")
    deadline, queries = time.monotonic() + timeout, 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            queries += 1
            row = conn.execute(query, (after, FINISHED)).fetchone()
            if row and row[0] >= n and row[1]:
                return queries
            time.sleep(0.25)
    raise TimeoutError(f"{n} jobs did not finish within {timeout}s")


def read_streams(database_url: str, after: int) -> dict[UUID, Stream]:
    """Every job's events stored after notification `after`, decoded."""
    jobs = Jobs(env=postgres_env(database_url))
    streams: dict[UUID, Stream] = {}
    try:
        while batch := jobs.recorder.select_notifications(
                start=after, limit=1000, inclusive_of_start=False):
            for notification in batch:
                event = jobs.mapper.to_domain_event(notification)
                if isinstance(event, Job.Event):
                    streams.setdefault(event.originator_id, []).append((notification.id, event))
            after = batch[-1].id
    finally:
        jobs.close()
    return streams


def completions(streams: dict[UUID, Stream]) -> list[float]:
    return [e.at.timestamp() for s in streams.values() for _, e in s
            if isinstance(e, Job.Completed)]


def dispatch_latencies(streams: dict[UUID, Stream]) -> list[float]:
    """Each stage's start after the outcome that last came before it in its job's stream."""
    latencies: list[float] = []
    for stream in streams.values():
        done = None
        for _, event in stream:
            if isinstance(event, Job.StageCompleted):
                done = event.at
            elif isinstance(event, Job.Started) and done is not None:
                latencies.append((event.at - done).total_seconds())
    return latencies


def hops(streams: dict[UUID, Stream],
         stored_at: Callable[[int], float | None]) -> dict[str, list[float]]:
    """Each hop's durations over every stage of `bench.noop_workflow`'s jobs."""
    found: dict[str, list[float]] = {name: [] for name in HOPS}
    for stream in streams.values():
        for i in range(2, len(stream)):
            (before_id, _), (_, started), (done_id, done) = stream[i - 2:i + 1]
            if not (isinstance(done, Job.StageCompleted) and isinstance(started, Job.Started)
                    and isinstance(done.output, dict) and "entered" in done.output):
                continue
            times = {**done.output, "started": started.at.timestamp(),
                     "before_stored": stored_at(before_id), "stored": stored_at(done_id)}
            for name, hop in HOPS.items():
                value = hop(times)
                if value is not None:
                    found[name].append(value)
    return found
