"""Projections that write a batch of events and its tracking record in one transaction."""

from __future__ import annotations

import zlib
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import orjson
import psycopg
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg import Cursor
from psycopg.sql import SQL, Composed, Identifier
from psycopg.types.json import Jsonb

from conveyor.aggregates import Job
from conveyor.changes import Change, JobFollower
from conveyor.errors import ConveyorError

APPLICATION = "Jobs"


def jsonb(value: Any) -> Jsonb:
    """JSON for a jsonb column, encoded by orjson (datetimes as ISO 8601)."""
    return Jsonb(value, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class PositionMovedError(ConveyorError):
    """Raised when a view's tracked position is not where the writer read from; retry."""


class BatchView(PostgresTrackingRecorder):
    """A read model's tables (optionally a scratch copy named with a suffix) and tracking."""

    tables: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, datastore: PostgresDatastore, *, tracking_table_name: str, suffix: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name + suffix, **kwargs)
        self.base_tracking_table = tracking_table_name
        self.suffix = suffix
        # Writers hold this lock shared; a rebuild's swap holds it exclusively.
        self.lock_key = self.lock_key_for(self.tracking_table_name)

    @staticmethod
    def lock_key_for(tracking_table_name: str) -> int:
        """The advisory lock key of the tables tracked in `tracking_table_name`."""
        return zlib.crc32(tracking_table_name.encode()) - 2**31

    def t(self, name: str) -> Identifier:
        """The identifier of table `name` in this copy of the model."""
        return Identifier(name + self.suffix)

    def sql(self, text: str, **tables: str) -> Composed:
        return SQL(text).format(**{k: self.t(v) for k, v in tables.items()})

    def all_tables(self) -> list[str]:
        return [*self.tables, self.base_tracking_table]

    def commit(self, changes: Sequence[Change], tracking: Tracking, after: int | None) -> None:
        """Write the batch's changes and its last position; `after` is where it was read from.

        A batch may hold no change of a job (other aggregates' events): only the position
        moves then.
        """
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT pg_advisory_xact_lock_shared(%s)", (self.lock_key,),
                         prepare=True)
            self.write_checked(curs, changes, tracking, after)

    def try_lock_shared(self, curs: Cursor[Any]) -> bool:
        """Take the writers' shared lock unless a rebuild's swap holds it; never wait."""
        curs.execute("SELECT pg_try_advisory_xact_lock_shared(%s) AS taken", (self.lock_key,),
                     prepare=True)
        found = curs.fetchone()
        return bool(found and found["taken"])

    def write_checked(self, curs: Cursor[Any], changes: Sequence[Change], tracking: Tracking,
                      after: int | None) -> None:
        """In the caller's transaction, holding the shared lock: check the position, write."""
        curs.execute(
            SQL("SELECT notification_id FROM {} WHERE application_name = %s FOR UPDATE")
            .format(Identifier(self.tracking_table_name)),
            (tracking.application_name,), prepare=True,
        )
        found = curs.fetchone()
        current = found["notification_id"] if found else None
        if (current or 0) != (after or 0):
            raise PositionMovedError(
                f"{self.tracking_table_name} is at {current}, batch read after {after}")
        if changes:
            self.write(curs, changes)
        self._insert_tracking(curs, tracking)

    @abstractmethod
    def write(self, curs: Cursor[Any], changes: Sequence[Change]) -> None:
        """Apply the changes to the tables, inside the caller's transaction."""

    @abstractmethod
    def rebuilt(self, jobs: Iterable[Job], changes: Sequence[Change]) -> Iterator[Loaded]:
        """What a rebuild from position zero loads into each table (see `conveyor.replay`).

        `jobs` are every job as the whole log leaves it, `changes` every event's change.
        """


TView = TypeVar("TView", bound=BatchView)


@dataclass(frozen=True)
class Loaded:
    """Rows for one table of a rebuild, in `columns` order; `json` names the jsonb columns."""

    table: str
    columns: tuple[str, ...]
    rows: Iterable[Sequence[Any]]
    json: frozenset[str] = frozenset()


def commit_together(batches: Sequence[tuple[BatchView, Sequence[Change]]], tracking: Tracking,
                    after: int | None) -> bool:
    """Write several views' batches, all read from `after`, in one transaction of their store.

    Each view's position is checked as `BatchView.commit` checks it. Returns False, having
    written nothing, when a rebuild holds one of the views: the caller commits them one at
    a time then. Holding one view's lock while waiting for another's could deadlock with
    a rebuild taking them in another order, so this never waits for a lock.
    """
    datastore = batches[0][0].datastore
    with datastore.transaction(commit=True) as curs:
        if not all(view.try_lock_shared(curs) for view, _ in batches):
            raise psycopg.Rollback
        for view, changes in batches:
            view.write_checked(curs, changes, tracking, after)
        return True
    return False


class BatchProjection(Projection[TView]):
    """A projection that takes events a batch at a time; one event is a batch of one.

    It is handed each event's `Change` (the job before and after it), worked out once
    by the runner's `JobFollower` for every projection it feeds.
    """

    def __init__(self, view: TView, follower: JobFollower) -> None:
        super().__init__(view)
        self.follower = follower

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        # The library's ProjectionRunner calls this once per event: a batch of one,
        # checked against the tracked position like any other batch.
        after = self.view.max_tracking_id(tracking.application_name)
        if after is not None and after >= tracking.notification_id:
            return
        self.view.commit(self.follower.apply_all([domain_event]), tracking, after)

    def process_batch(self, changes: Sequence[Change], tracking: Tracking,
                      after: int | None) -> None:
        """Apply the changes of the events read after `after`, tracking the batch's end."""
        self.view.commit(changes, tracking, after)
