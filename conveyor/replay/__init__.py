"""`conveyor replay`: rebuild or verify read models from the log, show a job as it was.

A rebuild folds the log from position zero in memory, in one pass for every projection,
and loads scratch copies of their tables with COPY while the live projector keeps running;
then it pauses the live projector (its advisory locks), catches the copies up to the head
and renames them over the live tables in one transaction.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

import psycopg
from psycopg.sql import SQL, Identifier

from conveyor.aggregates import Job, TransitionError
from conveyor.application import JobNotFoundError, Jobs
from conveyor.bootstrap import build_jobs
from conveyor.projections.batch import APPLICATION, BatchView
from conveyor.projections.runner import PROJECTIONS, BatchRunner, build_projection, follower_of
from conveyor.replay.rebuild import load
from conveyor.retention.archive import archived_file, domain_event
from conveyor.retention.files import ArchiveError, find_job
from conveyor.settings import Settings

Out = Callable[[str], None]


def _progress(name: str, head: int, stream: TextIO) -> Callable[[int], None]:
    def show(position: int) -> None:
        done = min(position, head) / head if head else 1.0
        bar = "#" * int(done * 30)
        stream.write(f"\r{name:<12} [{bar:<30}] {min(position, head)}/{head} events")
        stream.flush()

    return show


def _create_scratch(conn: psycopg.Connection[Any], view: BatchView) -> None:
    for table in view.all_tables():
        scratch = Identifier(table + view.suffix)
        conn.execute(SQL("DROP TABLE IF EXISTS {}").format(scratch))
        conn.execute(SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
            scratch, Identifier(table)))
    conn.execute(SQL("INSERT INTO {} VALUES ('__migration__', 1)").format(
        Identifier(view.tracking_table_name)))


def _drop_scratch(conn: psycopg.Connection[Any], view: BatchView) -> None:
    for table in view.all_tables():
        conn.execute(SQL("DROP TABLE IF EXISTS {}").format(Identifier(table + view.suffix)))


def _indexes(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    """The table's indexes by their definition with names left out, to match copies."""
    rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
                        (table,)).fetchall()
    return {d.replace(f" {n} ON ", " ON ").split(" USING ", 1)[1]: n for n, d in rows}


def _live_lock(conn: psycopg.Connection[Any], name: str) -> None:
    # The same key the live view's writers take shared: the live projector pauses.
    conn.execute("SELECT pg_advisory_xact_lock(%s)",
                 (BatchView.lock_key_for(f"{name}_tracking"),))


def _catch_up(app: Jobs, names: Sequence[str], suffix: str, stop: int,
              progress: Callable[[int], None] | None = None) -> int:
    follower = follower_of(app)
    runner = BatchRunner(app, [build_projection(n, app, follower, suffix) for n in names],
                         batch_size=5000)
    return runner.run_until(stop, progress)


def _swap(conn: psycopg.Connection[Any], view: BatchView) -> None:
    for table in view.all_tables():
        live = _indexes(conn, table)
        conn.execute(SQL("DROP TABLE {}").format(Identifier(table)))
        conn.execute(SQL("ALTER TABLE {} RENAME TO {}").format(
            Identifier(table + view.suffix), Identifier(table)))
        for definition, index in _indexes(conn, table).items():
            if definition in live and live[definition] != index:
                conn.execute(SQL("ALTER INDEX {} RENAME TO {}").format(
                    Identifier(index), Identifier(live[definition])))


def rebuild(settings: Settings, names: Sequence[str], out: Out = print,
            stream: TextIO = sys.stderr) -> dict[str, int]:
    """Rebuild the projections from zero in one pass into fresh tables, then swap them in."""
    app = build_jobs(settings)
    try:
        with psycopg.connect(settings.session_url(long_work=True), autocommit=True) as conn:
            follower = follower_of(app)
            views = {n: build_projection(n, app, follower, "__rebuild").view for n in names}
            for view in views.values():
                _create_scratch(conn, view)
            head = app.recorder.max_notification_id() or 0
            read = load(app, conn, views, head, _progress(", ".join(names), head, stream))
            with conn.transaction():
                # Every live writer of these models pauses; the tail is short.
                for name in names:
                    _live_lock(conn, name)
                head = app.recorder.max_notification_id() or 0
                read += _catch_up(app, names, "__rebuild", head)
                for view in views.values():
                    _swap(conn, view)
            stream.write("\n")
    finally:
        app.close()
    for name in names:
        out(f"{name}: rebuilt from {read} events, swapped in at {head}")
    return dict.fromkeys(names, read)


def verify(settings: Settings, names: Sequence[str], out: Out = print) -> list[str]:
    """Rebuild into scratch tables up to each live position and list every difference."""
    app = build_jobs(settings)
    differences: list[str] = []
    try:
        with psycopg.connect(settings.session_url(long_work=True), autocommit=True) as conn:
            follower = follower_of(app)
            views = {n: build_projection(n, app, follower, "__verify").view for n in names}
            lives = {n: build_projection(n, app, follower).view for n in names}
            for view in views.values():
                _create_scratch(conn, view)
            try:
                start = min(v.max_tracking_id(APPLICATION) or 0 for v in lives.values())
                load(app, conn, views, start)
                for name, view in views.items():
                    with conn.transaction():
                        _live_lock(conn, name)
                        position = lives[name].max_tracking_id(APPLICATION) or 0
                        _catch_up(app, [name], view.suffix, position)
                        found = [line for table in view.tables
                                 for line in _compare(conn, table, table + view.suffix)]
                    out(f"{name}: {'differs' if found else 'matches the log'}")
                    differences += found
            finally:
                for view in views.values():
                    _drop_scratch(conn, view)
    finally:
        app.close()
    for line in differences:
        out(line)
    return differences


def _compare(conn: psycopg.Connection[Any], live: str, scratch: str,
             sample: int = 10) -> list[str]:
    found = []
    for left, right, where in ((live, scratch, "only in live"),
                               (scratch, live, "only in rebuilt")):
        rows = conn.execute(SQL("SELECT * FROM {} EXCEPT ALL SELECT * FROM {}").format(
            Identifier(left), Identifier(right))).fetchall()
        found += [f"{live}: {where}: {row}" for row in rows[:sample]]
        if len(rows) > sample:
            found.append(f"{live}: {where}: ... {len(rows) - sample} more")
    return found


def show_job(settings: Settings, job_id: UUID, version: int | None, at: datetime | None,
             out: Out = print, archive: Path | None = None) -> int:
    """Print the job's events in order and its state after each, up to a version or time.

    With `archive`, the events are read from the archive directory's files instead
    (docs/architecture.md §8.4).
    """
    app = build_jobs(settings)
    try:
        events: list[Any] = (
            list(app.repository.event_store.get(job_id)) if archive is None
            else [domain_event(app, row) for row in find_job(archive, job_id)])
        if not events:
            where = archive or archived_file(settings, job_id)
            if where is not None:
                out(f"job {job_id} is not in {archive}" if archive else
                    f"job {job_id} was archived to {where}: add --archive DIR")
                return 1
            raise JobNotFoundError.of(job_id)
        job: Any = None
        for event in events:
            if version is not None and event.originator_version > version:
                break
            if at is not None and event.timestamp > at:
                break
            job = event.mutate(job)
            fields = {k: v for k, v in vars(event).items() if k not in (
                "originator_id", "originator_version", "timestamp", "originator_topic",
                "delivery", "plan", "trigger")}
            out(f"v{event.originator_version} {event.timestamp.isoformat()} "
                f"{type(event).__name__} {fields}")
            if isinstance(job, Job):
                stages = ", ".join(f"{s}={run.state}/{run.attempt}" for s, run in job.runs.items())
                out(f"    -> {job.status}  {stages}")
        if job is None:
            out("no events at or before that point")
            return 1
        return 0
    finally:
        app.close()


def bulk_retry(settings: Settings, status: str, since: datetime | None, workflow: str | None,
               dry_run: bool, out: Out = print) -> list[UUID]:
    """Retry every job the `jobs` read model shows in `status` that matches the filters."""
    clauses, params = ["status = %s"], [status]
    if since is not None:
        clauses.append("finished_at >= %s")
        params.append(since)  # type: ignore[arg-type]
    if workflow is not None:
        clauses.append("workflow = %s")
        params.append(workflow)
    with psycopg.connect(settings.session_url()) as conn:
        ids = [r[0] for r in conn.execute(
            f"SELECT job_id FROM jobs WHERE {' AND '.join(clauses)} ORDER BY created_at",
            params)]
    if dry_run:
        for job_id in ids:
            out(f"would retry {job_id}")
        out(f"{len(ids)} job(s) would be retried")
        return ids
    app = build_jobs(settings)
    correlation_id = f"replay-retry-{uuid.uuid4().hex[:12]}"
    retried = []
    try:
        for job_id in ids:
            try:
                app.retry(job_id, by="conveyor replay retry", correlation_id=correlation_id)
                retried.append(job_id)
            except TransitionError as error:
                out(f"skipped {job_id}: {error}")
    finally:
        app.close()
    out(f"retried {len(retried)} job(s), correlation id {correlation_id}")
    return retried


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="replay_command", required=True)
    for name, help_text in (
        ("rebuild", "rebuild read models from the log and swap them in while live"),
        ("verify", "rebuild read models aside and list where they differ from the live ones"),
    ):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("projections", nargs="*", metavar="PROJECTION",
                             help=f"any of {', '.join(PROJECTIONS)} (default: all)")
    job = sub.add_parser("job", help="print a job's events and its state after each")
    job.add_argument("job_id", type=UUID)
    when = job.add_mutually_exclusive_group()
    when.add_argument("--version", type=int)
    when.add_argument("--at", type=_time)
    job.add_argument("--archive", type=Path, metavar="DIR",
                     help="read the job from the archive in DIR (`conveyor archive`)")
    retry = sub.add_parser(
        "retry", help="retry the FAILED jobs that match the filters (--dry-run lists them)")
    retry.add_argument("--status", required=True, choices=["FAILED"])
    retry.add_argument("--since", type=_time)
    retry.add_argument("--workflow")
    retry.add_argument("--dry-run", action="store_true")


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    command = args.replay_command
    if command in ("rebuild", "verify"):
        names = list(args.projections) or list(PROJECTIONS)
        unknown = set(names) - set(PROJECTIONS)
        if unknown:
            raise SystemExit(f"unknown projection(s): {', '.join(sorted(unknown))}")
        if command == "rebuild":
            rebuild(settings, names)
            return 0
        return 1 if verify(settings, names) else 0
    if command == "job":
        try:
            return show_job(settings, args.job_id, args.version, args.at,
                            archive=args.archive)
        except (JobNotFoundError, ArchiveError) as error:
            print(error, file=sys.stderr)
            return 1
    bulk_retry(settings, args.status, args.since, args.workflow, args.dry_run)
    return 0
