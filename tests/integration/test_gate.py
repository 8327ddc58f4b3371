"""The HTTP apps' database gate: a quick refusal while PostgreSQL cannot be reached."""

from __future__ import annotations

import time

import pytest

from conveyor.http.gate import DatabaseGate, DatabaseUnavailableError
from tests.e2e.stack import free_port


def test_a_reachable_database_passes_the_gate(database: str) -> None:
    DatabaseGate(database).check()


def test_an_unreachable_database_is_refused_at_once_and_remembered() -> None:
    gate = DatabaseGate(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    began = time.monotonic()
    for _ in range(20):
        with pytest.raises(DatabaseUnavailableError):
            gate.check()
    assert time.monotonic() - began < 1.0
