"""The HTTP apps' database gate: a quick refusal while PostgreSQL cannot be reached."""

from __future__ import annotations

import time

import psycopg
import pytest

from conveyor.http.gate import DatabaseGate, DatabaseUnavailableError
from tests.e2e.stack import free_port
from tests.waiting import wait_until


def test_a_reachable_database_passes_the_gate(database: str) -> None:
    DatabaseGate(database).check()


def test_an_unreachable_database_is_refused_at_once_and_remembered() -> None:
    gate = DatabaseGate(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    began = time.monotonic()
    for _ in range(20):
        with pytest.raises(DatabaseUnavailableError):
            gate.check()
    assert time.monotonic() - began < 1.0


def test_a_cached_healthy_answer_is_not_trusted_once_the_server_drops_the_probe(
    database: str,
) -> None:
    # Given a gate whose healthy answer would stay cached forever (its clock stands still)
    gate = DatabaseGate(database, clock=lambda: 0.0)
    gate.check()
    probe = gate._conn
    assert probe is not None
    first = probe.info.backend_pid

    # When the server ends the probe's session, as a shutdown does to every client
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    wait_until(gate._server_spoke, timeout=10)

    # Then the next check probes again at once, on a new session
    gate.check()
    assert gate._conn is not None and gate._conn.info.backend_pid != first
