"""eventsourcing's PostgreSQL persistence, with every session bounded; `PERSISTENCE_MODULE`.

Three differences from the library's own module, each because one frozen session would
otherwise stall every writer (`conveyor.settings.SessionBounds`):

- the pool connects with the sessions' keepalives and statement bound, for which the
  library has no variable;
- a connection the server ended for idling in a transaction (its process was frozen) is
  an `OperationalError`, like any lost connection: psycopg calls it an `InternalError`,
  which neither the library's retries nor Conveyor's outage handling would take for one;
- an insert is one statement in one message, not the library's pipelined transaction
  (`conveyor.store.recorder`, migration 0045): the server arms
  `idle_in_transaction_session_timeout` only at a `Sync`, so a process frozen between its
  `LOCK` and its `Sync` held the lock for as long as it stayed frozen;
- an insert whose table lock was not granted within the lock timeout fails at once as
  `EventStoreBusyError`, where the library retries every `OperationalError` ten times:
  a webhook would wait ten lock timeouts before its 503.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import parse_qsl

import psycopg
import psycopg.errors
from eventsourcing.persistence import InterfaceError, InternalError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment
from psycopg.rows import DictRow

from conveyor.errors import ConveyorError
from conveyor.settings import SESSION_PARAMS

# The library's own retry of a lost connection: ten tries, 0.2 s apart.
INSERT_ATTEMPTS = 10
INSERT_RETRY_SECONDS = 0.2
# Waits that ran past their bound; retrying them at once would only wait again.
BOUND_EXCEEDED = (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)


class EventStoreBusyError(ConveyorError, OperationalError):
    """Raised when events could not be written within `CONVEYOR_DB_LOCK_TIMEOUT` (or the
    statement timeout) because another session held the event store's lock.

    An `OperationalError`: the web apps answer 503, a worker's message is retried.
    """


class BoundedDatastore(PostgresDatastore):
    """The library's datastore, taking a server-ended idle transaction for a lost connection,
    and dropping a session whose statement ran past a bound."""

    @contextmanager
    def get_connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        try:
            with super().get_connection() as conn:
                try:
                    yield conn
                except BOUND_EXCEEDED:
                    # After a pipeline aborted by a timeout, psycopg's cache of prepared
                    # statements can disagree with the server's ("prepared statement
                    # _pg3_2 does not exist" on the next insert): a fresh session instead.
                    conn.close()
                    raise
        except InternalError as error:
            if isinstance(error.__cause__, psycopg.errors.IdleInTransactionSessionTimeout):
                raise OperationalError(str(error)) from error.__cause__
            raise


class BoundedApplicationRecorder(PostgresApplicationRecorder):
    """The library's recorder, failing fast when the events table's lock is not granted."""

    # One try of an insert, without the library's retries (see `insert_events`).
    _insert_once = cast(Callable[..., Sequence[int] | None],
                        inspect.unwrap(PostgresApplicationRecorder.insert_events))

    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        for attempt in range(1, INSERT_ATTEMPTS + 1):
            try:
                return self._insert_once(stored_events, **kwargs)
            except (InterfaceError, OperationalError) as error:
                if isinstance(error.__cause__, BOUND_EXCEEDED):
                    raise EventStoreBusyError(str(error)) from error.__cause__
                if attempt == INSERT_ATTEMPTS:
                    raise
            time.sleep(INSERT_RETRY_SECONDS)
        raise AssertionError("unreachable")  # pragma: no cover


class Factory(PostgresFactory):
    """The library's PostgreSQL factory, its pool's sessions bounded."""

    application_recorder_class = BoundedApplicationRecorder

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        # The library builds its datastore itself and has no hook for its class.
        self.datastore.__class__ = BoundedDatastore
        params = dict(parse_qsl(self.env.get(SESSION_PARAMS) or ""))
        kwargs = self.datastore.pool.kwargs
        if isinstance(kwargs, dict):
            kwargs.update(params)
