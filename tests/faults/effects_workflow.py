"""A workflow whose stages leave effects a fault test can count, loaded by the real worker.

Each stage writes one row to `effects`, keyed by (job, stage), with `INSERT ... ON CONFLICT
DO NOTHING`: a stage run again after its worker was killed finds its effect already there
and records the conflict instead, so the effect itself happens once. The stage sleeps
around the write, so a kill can land before or after it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg

from conveyor.workflows import RetryPolicy, StageContext, Workflow

# Created by each test in its own database; not a migration, the tables are the test's.
SCHEMA = (
    "CREATE TABLE effects (job_id uuid NOT NULL, stage text NOT NULL, attempt int NOT NULL,"
    " worker int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " PRIMARY KEY (job_id, stage))",
    "CREATE TABLE effect_conflicts (job_id uuid NOT NULL, stage text NOT NULL,"
    " attempt int NOT NULL, worker int NOT NULL,"
    " at timestamptz NOT NULL DEFAULT clock_timestamp())",
)
# Short enough that a killed or frozen worker's stage is recovered within seconds.
TIME_LIMIT = 2.0
RETRY = RetryPolicy(attempts=3, initial_delay=1.0, multiplier=2.0, jitter=0.0)

effects = Workflow("effects")
_local = threading.local()


class EffectsUnavailableError(ConnectionError):
    """Raised when the effects table cannot be reached (the database is restarting)."""


def _connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["CONVEYOR_DATABASE_URL"], autocommit=True,
                               connect_timeout=3)
        _local.conn = conn
    return conn


def _write(ctx: StageContext) -> None:
    conn = _connection()
    written = conn.execute(
        "INSERT INTO effects VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (ctx.job_id, ctx.stage, ctx.attempt, os.getpid()),
    ).fetchone()
    if written is None:
        conn.execute("INSERT INTO effect_conflicts VALUES (%s, %s, %s, %s)",
                     (ctx.job_id, ctx.stage, ctx.attempt, os.getpid()))


def record_effect(ctx: StageContext) -> dict[str, Any]:
    """Sleep, write this stage's effect once, sleep again; fail if the trigger says so."""
    seconds = float(ctx.trigger.get("seconds", 0.2))
    time.sleep(seconds / 2)
    if ctx.trigger.get("mode") == "fail":
        raise ConnectionError(f"{ctx.stage} always fails (attempt {ctx.attempt})")
    # The effect store is this database: ride out its restarts as a real handler's own
    # client would, so an outage costs time, not a stage attempt.
    deadline = time.monotonic() + 60
    while True:
        try:
            _write(ctx)
            break
        except psycopg.OperationalError as error:
            _local.conn = None
            if time.monotonic() > deadline:
                raise EffectsUnavailableError(str(error)) from error
            time.sleep(0.2)
    time.sleep(seconds / 2)
    return {"stage": ctx.stage, "attempt": ctx.attempt}


effects.stage("first", retry=RETRY, time_limit=TIME_LIMIT)(record_effect)
effects.stage("second", retry=RETRY, time_limit=TIME_LIMIT)(record_effect)
