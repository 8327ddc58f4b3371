"""A misconfigured command says what to set in one line; a missing database is waited for."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.stack import CONVEYOR, free_port
from tests.waiting import wait_until


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return {**env, **settings}


def _conveyor(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONVEYOR, *args], env=_env(**settings), capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("command", ["relay", "projector", "api", "migrate"])
def test_a_command_without_a_database_url_says_what_to_set_in_one_line(command: str) -> None:
    # Given no CONVEYOR_DATABASE_URL
    # When the command starts
    result = _conveyor(command)

    # Then it exits 2 with one line on stderr naming the variable, and no traceback
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "CONVEYOR_DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_non_number_in_a_numeric_setting_is_refused_in_one_line() -> None:
    result = _conveyor("relay", CONVEYOR_DATABASE_URL="postgresql://postgres@127.0.0.1/x",
                       CONVEYOR_RELAY_POLL_SECONDS="soon")

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "conveyor relay: CONVEYOR_RELAY_POLL_SECONDS must be a number, not 'soon'"]


def test_a_relay_started_before_its_database_waits_for_it_naming_the_address(
    tmp_path: Path,
) -> None:
    # Given a database URL (with a password) whose port nobody listens on
    port = free_port()
    env = _env(CONVEYOR_DATABASE_URL=f"postgresql://postgres:hunter2@127.0.0.1:{port}/conveyor")
    log = tmp_path / "relay.log"

    # When the relay starts
    with log.open("wb") as stderr:
        relay = subprocess.Popen([CONVEYOR, "relay"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=stderr)
    try:
        # Then it says it waits for PostgreSQL at host:port, and keeps running
        wait_until(lambda: f"waiting for PostgreSQL at 127.0.0.1:{port}" in log.read_text(),
                   timeout=10)
        assert relay.poll() is None
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=10)
    output = log.read_text()
    assert "hunter2" not in output
    assert "Traceback" not in output


def test_replay_help_describes_each_subcommand() -> None:
    result = _conveyor("replay", "--help")

    assert result.returncode == 0
    for name in ("rebuild", "verify", "job", "retry"):
        assert re.search(rf"^\s+{name}\s+\w+", result.stdout, re.MULTILINE), result.stdout
