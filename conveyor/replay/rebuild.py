"""Rebuilding read models from position zero: one pass over the log, state held in memory.

A rebuild starts from empty tables, so it has nothing to read back: the projections'
state is folded in memory (each event decoded once, every projection fed from it) and
each table is written once with COPY, its indexes built after the load. Only the tail
the live writers add meanwhile goes through the ordinary batch path (`BatchRunner`).
"""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg import Copy
from psycopg.sql import SQL, Composable, Composed, Identifier

from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.changes import Change, JobFollower
from conveyor.projections import history, rows
from conveyor.projections.batch import APPLICATION, BatchView
from conveyor.projections.history import HistoryView

Progress = Callable[[int], None]
PAGE = 10_000


class Fold:
    """Every job after every event up to a position, folded in memory by the aggregate itself."""

    def __init__(self, streams_history: bool) -> None:
        self.streams_history = streams_history
        # From position zero every job's stream is followed from its start: nothing to read.
        self.follower = JobFollower(load=None, capacity=None)
        self.changes: list[Change] = []
        self.position = 0
        self.events = 0

    def add(self, event: Any, history_lines: list[bytes]) -> None:
        """Fold one event; its `job_events` row, if the history is rebuilt, goes in the list."""
        change = self.follower.apply(event)
        if change is None:
            return
        self.changes.append(change)
        if self.streams_history:
            history_lines.append(history_line(event))

    def jobs(self) -> Iterator[Job]:
        return iter(self.follower.jobs.values())


def history_line(event: Any) -> bytes:
    """The `job_events` row of one Job event, as a line of COPY's text format.

    Formatted here rather than by psycopg's per-value dumpers: the history is the largest
    table and this is the rebuild's hottest loop. orjson escapes every control character,
    so its output needs only its backslashes doubled.
    """
    correlation_id = getattr(event, "correlation_id", None)
    data = orjson.dumps(history.event_data(event)).replace(b"\\", b"\\\\")
    return b"%s\t%d\t%s\t%s\t%s\t%s\n" % (
        str(event.originator_id).encode(), event.originator_version,
        copy_text(type(event).__name__), rows.event_time(event).isoformat().encode(),
        b"\\N" if correlation_id is None else copy_text(str(correlation_id)), data)


def copy_text(value: str) -> bytes:
    """A text value escaped for COPY's text format."""
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t").encode())


def read_log(app: Jobs, stop: int, page: int = PAGE) -> Iterator[tuple[int, Sequence[Any]]]:
    """The log's events up to `stop`, a page at a time, the next page read while one is used."""
    pages: queue.Queue[tuple[int, Sequence[Any]] | BaseException | None] = queue.Queue(maxsize=2)
    done = threading.Event()

    def read() -> None:
        position = 0
        try:
            while position < stop and not done.is_set():
                notes = app.recorder.select_notifications(
                    position, page, stop=stop, inclusive_of_start=False)
                if not notes:
                    break
                position = notes[-1].id
                pages.put((position, notes))
            pages.put(None)
        except BaseException as error:  # handed to the consumer, which re-raises it
            pages.put(error)

    reader = threading.Thread(target=read, name="rebuild-reader", daemon=True)
    reader.start()
    try:
        while (item := pages.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        done.set()
        while reader.is_alive():
            with suppress(queue.Empty):
                pages.get(timeout=0.1)
        reader.join()


def _copy(conn: psycopg.Connection[Any], table: Composable, columns: Sequence[str],
          values: Iterable[Sequence[Any]],
          json: frozenset[str] = frozenset(), page: int = 5000) -> None:
    """COPY the rows in, formatted here (`json` names the jsonb columns) a page at a time."""
    statement = SQL("COPY {} ({}) FROM STDIN").format(
        table, SQL(", ").join(Identifier(c) for c in columns))
    is_json = [c in json for c in columns]
    with conn.cursor() as curs, curs.copy(statement) as copy:
        lines: list[bytes] = []
        for row in values:
            lines.append(b"\t".join(
                b"\\N" if v is None else
                orjson.dumps(v).replace(b"\\", b"\\\\") if j else copy_field(v)
                for v, j in zip(row, is_json, strict=True)) + b"\n")
            if len(lines) >= page:
                copy.write(b"".join(lines))
                lines = []
        if lines:
            copy.write(b"".join(lines))


def copy_field(value: Any) -> bytes:
    """One non-JSON value in COPY's text format."""
    if isinstance(value, str):
        return copy_text(value)
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, int | float | UUID):
        return str(value).encode()
    if isinstance(value, datetime):
        return value.isoformat().encode()
    if isinstance(value, list):
        quoted = (str(v).replace("\\", "\\\\").replace('"', '\\"') for v in value)
        return copy_text("{" + ",".join(f'"{v}"' for v in quoted) + "}")
    raise TypeError(f"no COPY format for {type(value).__name__}")


def _without_indexes(conn: psycopg.Connection[Any], table: str) -> list[SQL | Composed]:
    """Drop the table's indexes and keys; return the statements that make them again."""
    remake: list[SQL | Composed] = []
    for name, definition in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype IN ('p', 'u')", (table,)).fetchall():
        conn.execute(SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            Identifier(table), Identifier(name)))
        remake.append(SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            Identifier(table), Identifier(name), SQL(definition)))
    for name, definition in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
            (table,)).fetchall():
        conn.execute(SQL("DROP INDEX {}").format(Identifier(name)))
        remake.append(SQL(definition))
    return remake


def load(app: Jobs, conn: psycopg.Connection[Any], views: dict[str, BatchView], stop: int,
         progress: Progress | None = None) -> int:
    """Fill the views' empty tables with the log up to `stop`; return the events read.

    Each view's tables must exist and be empty; their tracking ends at `stop`.
    """
    tables = [t + v.suffix for v in views.values() for t in v.tables]
    remake = [s for t in tables for s in _without_indexes(conn, t)]
    history_view = next((v for v in views.values() if isinstance(v, HistoryView)), None)
    state = Fold(streams_history=history_view is not None)
    # Millions of long-lived dicts and no cycles: the cyclic collector would only rescan them.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load(app, conn, views, stop, progress, state, remake, history_view)
    finally:
        if collecting:
            gc.enable()


def _load(app: Jobs, conn: psycopg.Connection[Any], views: dict[str, BatchView], stop: int,
          progress: Progress | None, state: Fold, remake: list[SQL | Composed],
          history_view: BatchView | None) -> int:
    with conn.transaction(), conn.cursor() as curs:
        copy_events: AbstractContextManager[Copy | None] = nullcontext()
        if history_view is not None:
            copy_events = curs.copy(SQL("COPY {} ({}) FROM STDIN").format(
                history_view.t("job_events"),
                SQL(", ").join(Identifier(c) for c in history.EVENT_COLUMNS)))
        with copy_events as copy:
            to_event = app.mapper.to_domain_event
            for position, notes in read_log(app, stop):
                lines: list[bytes] = []
                for note in notes:
                    state.add(to_event(note), lines)
                if copy is not None and lines:
                    copy.write(b"".join(lines))
                state.events += len(notes)
                state.position = position
                if progress is not None:
                    progress(position)
        _write(conn, views, state)
        for statement in remake:
            conn.execute(statement)
        for view in views.values() if stop else ():
            conn.execute(SQL("INSERT INTO {} (application_name, notification_id) VALUES (%s, %s)")
                         .format(Identifier(view.tracking_table_name)), (APPLICATION, stop))
    return state.events


def _write(conn: psycopg.Connection[Any], views: dict[str, BatchView], state: Fold) -> None:
    jobs = list(state.jobs())
    for view in views.values():
        for loaded in view.rebuilt(jobs, state.changes):
            _copy(conn, view.t(loaded.table), loaded.columns, loaded.rows, loaded.json)
