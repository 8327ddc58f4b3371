"""`conveyor archive`: move finished jobs past their retention out of the store, into files.

A run (at most `RUN_JOBS` jobs; the command makes as many as are due) has two phases
(docs/architecture.md §8.4). First it writes every due job's stream to the run's day files
and, once they are fsynced, the manifest. Then it removes the jobs the manifest lists, in
short transactions: events, read-model rows, the metrics they counted, relay rows; each job
leaves a tombstone in `archived_jobs`. A run that dies between the two leaves a manifest
that no `archive_runs` row marks done, and the next run finishes its removal before it
looks for new jobs, so nothing is archived twice or lost.
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent

from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.bootstrap import build_jobs
from conveyor.changes import JobFollower
from conveyor.errors import ConveyorError
from conveyor.projections.batch import BatchView
from conveyor.projections.metrics import MetricsView
from conveyor.projections.runner import PROJECTIONS, build_projection, follower_of
from conveyor.retention import store
from conveyor.retention.files import ArchivedJob, Manifest, RunWriter, StoredRow, manifests
from conveyor.settings import Settings

Out = Any
# Jobs removed in one transaction: it holds off every append, so it stays a few ms long.
REMOVE_BATCH = 250
# Jobs one run writes before it removes them, so a first run over a large store holds a
# bounded manifest in memory; the command goes on with another run while more are due.
RUN_JOBS = 100_000
AGE = re.compile(r"([0-9]{1,6})([dhm])")
UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(value: str) -> timedelta:
    """`30d`, `12h` or `90m` as a timedelta."""
    match = AGE.fullmatch(value.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an age: a whole number and d, h or m (e.g. 30d)")
    return timedelta(**{UNITS[match[2]]: int(match[1])})


def domain_event(app: Jobs, row: StoredRow) -> Any:
    """The event a stored row holds, decoded as the store would decode it."""
    return app.mapper.to_domain_event(
        StoredEvent(row.job_id, row.version, row.topic, row.state))


def fold(app: Jobs, rows: Sequence[StoredRow]) -> Any:
    """The aggregate a whole stream makes."""
    aggregate: Any = None
    for row in rows:
        aggregate = domain_event(app, row).mutate(aggregate)
    return aggregate


@dataclass
class Report:
    """What a run did (or, dry, would do)."""

    runs: list[str] = field(default_factory=list)
    jobs: int = 0
    events: int = 0
    days: dict[date, int] = field(default_factory=dict)
    held_back: int = 0
    resumed: int = 0
    removed_events: int = 0


def archive(settings: Settings, *, older_than: timedelta | None = None, dry_run: bool = False,
            now: datetime | None = None, out: Out = print) -> Report:
    """Archive and remove the finished jobs past their retention; see the module docstring."""
    directory = None if dry_run else settings.require_archive_dir()
    now = now or datetime.now(UTC)
    app = build_jobs(settings)
    try:
        with psycopg.connect(settings.session_url(), autocommit=True) as conn:
            taken = conn.execute("SELECT pg_try_advisory_lock(%s)",
                                 (store.ARCHIVE_LOCK,)).fetchone()
            if not (taken and taken[0]):
                raise ArchiveBusyError("another `conveyor archive` is running on this database")
            follower = follower_of(app)
            views = [build_projection(n, app, follower).view for n in PROJECTIONS]
            report = Report()
            if directory is None:
                _write(conn, app, settings, older_than, now, None, report)
                _say_dry(report, out)
                return report
            report.resumed = _resume(conn, app, views, directory, out)
            while True:
                # Sorted by name, runs are in the order they were made.
                run = f"{now:%Y%m%dT%H%M%SZ}-{len(report.runs) + 1:04d}-{uuid.uuid4().hex[:6]}"
                writer = RunWriter(directory, run, now)
                report.held_back = 0
                full = _write(conn, app, settings, older_than, now, writer, report)
                manifest = writer.finish()
                if manifest.files:
                    report.runs.append(run)
                    report.removed_events += _remove(conn, app, views, manifest)
                    out(f"run {run}: {manifest.jobs} job(s), {manifest.events} event(s),"
                        f" {len(manifest.files)} file(s)")
                if not full:
                    break
            out(f"archived {report.jobs} job(s), {report.events} event(s), in"
                f" {len(report.runs)} run(s) to {directory}")
            if report.held_back:
                out(f"{report.held_back} due job(s) held back: a follower of the log has not"
                    " passed their last event yet")
            return report
    finally:
        app.close()


def _write(conn: psycopg.Connection[Any], app: Jobs, settings: Settings,
           older_than: timedelta | None, now: datetime, writer: RunWriter | None,
           report: Report) -> bool:
    """Phase one: the due jobs' streams into the run's files (or counted, when dry);
    True when the run is full and more may be due."""
    written = 0
    settled = store.settled_position(conn)
    top = store.head(conn)
    for page in store.due_jobs(conn, now, older_than, settings.retention_days):
        found = store.streams(conn, page)
        for job_id in page:
            rows = found.get(job_id)
            if not rows:
                continue
            last = max(r.notification_id for r in rows)
            # The log's last event stays, so its head never goes back below a position.
            if settled is None or last > settled or last >= top:
                report.held_back += 1
                continue
            job = fold(app, rows)
            if not isinstance(job, Job) or not job.status.is_terminal or not job.finished_at:
                continue
            entry = ArchivedJob(job.id, job.version, job.finished_at, job.organization)
            if writer is not None:
                writer.add(entry, rows)
                written += 1
            day = job.finished_at.date()
            report.days[day] = report.days.get(day, 0) + 1
            report.jobs += 1
            report.events += len(rows)
            if written == RUN_JOBS:
                return True
    return False


def _say_dry(report: Report, out: Out) -> None:
    for day, n in sorted(report.days.items()):
        out(f"{day.isoformat()}: {n} job(s)")
    out(f"would archive {report.jobs} job(s), {report.events} event(s)"
        + (f"; {report.held_back} held back" if report.held_back else ""))


def _resume(conn: psycopg.Connection[Any], app: Jobs, views: list[BatchView],
            directory: Path, out: Out) -> int:
    """Finish the removal of runs whose files were written but whose removal was cut short."""
    if not directory.is_dir():
        return 0
    found = {m.run: m for m in manifests(directory)}
    resumed = 0
    for run in store.unapplied_runs(conn, found):
        _remove(conn, app, views, found[run])
        out(f"finished the removal of run {run}, cut short before")
        resumed += 1
    return resumed


def _remove(conn: psycopg.Connection[Any], app: Jobs, views: list[BatchView],
            manifest: Manifest) -> int:
    """Phase two: remove what the manifest lists, a batch to a transaction; events removed."""
    files = {j.job_id: f.name for f in manifest.files for j in f.jobs}
    listed = [j for f in manifest.files for j in f.jobs]
    jobs = events = 0
    for start in range(0, len(listed), REMOVE_BATCH):
        batch = listed[start:start + REMOVE_BATCH]
        while True:
            try:
                removed = _remove_batch(conn, app, views, manifest.run, files, batch)
                break
            except _StreamMovedError:
                continue  # a job was retried meanwhile: the next try leaves it
        jobs += removed[0]
        events += removed[1]
    store.finish_run(conn, manifest.run, jobs, events)
    return events


def _remove_batch(conn: psycopg.Connection[Any], app: Jobs, views: list[BatchView], run: str,
                  files: dict[UUID, str], batch: Sequence[ArchivedJob]) -> tuple[int, int]:
    """One transaction: the rows and counts of the batch's unchanged jobs, then their events.

    The streams are read and decoded before it (the session's idle-in-transaction bound
    is short); the removal of the events checks they have not moved on since. The read
    models go before the events table is locked, so appends wait only for that check
    and the delete.
    """
    rows = store.streams(conn, [j.job_id for j in batch])
    keep = [j for j in batch if j.job_id in rows and rows[j.job_id][-1].version == j.version]
    if not keep:
        return 0, 0
    changes = JobFollower(load=None, capacity=None).apply_all(
        [domain_event(app, r) for j in keep for r in rows[j.job_id]])
    metrics = next(v for v in views if isinstance(v, MetricsView))
    with conn.transaction():
        store.lock_views(conn, views)
        with conn.cursor() as curs:
            metrics.forget(curs, changes)
        store.remove_rows(conn, keep, run, files, [v for v in views if v is not metrics])
        events = store.remove_streams(conn, keep)
        if events is None:
            raise _StreamMovedError
        return len(keep), events


class _StreamMovedError(ConveyorError):
    """A job of the batch got an event after the batch read it; the batch is rolled back."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than", type=parse_age, metavar="AGE",
        help="archive jobs finished longer ago than AGE (30d, 12h); default: each"
             " organisation's retention, else CONVEYOR_RETENTION_DAYS")
    parser.add_argument("--dry-run", action="store_true",
                        help="count the due jobs by finish day; write and remove nothing")


def run_archive(settings: Settings, args: argparse.Namespace) -> int:
    if args.older_than is None and settings.retention_days is None:
        print("retention is forever (CONVEYOR_RETENTION_DAYS is not set): only"
              " organisations with their own retention are archived")
    try:
        archive(settings, older_than=args.older_than, dry_run=args.dry_run)
    except ArchiveBusyError as error:
        print(f"conveyor archive: {error}")
        return 1
    return 0


def archived_file(settings: Settings, job_id: uuid.UUID) -> str | None:
    """The file a job was archived to, if it was."""
    with psycopg.connect(settings.session_url()) as conn:
        return store.is_archived(conn, job_id)


class ArchiveBusyError(ConveyorError):
    """Raised when another `conveyor archive` holds the archive's lock on the database."""
