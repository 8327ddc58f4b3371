"""An installed wheel, outside the checkout, migrates a database and runs the demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, scratch_database
from tests.e2e.stack import free_port

MIGRATIONS = sorted(p.name for p in (ROOT / "conveyor" / "migrations").glob("*.sql"))


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A database with nothing in it, not cloned from the migrated template."""
    with scratch_database("conveyor_wheel") as url:
        yield url


def _run(*args: str | Path, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_a_wheel_installed_outside_the_checkout_migrates_and_runs_the_demo(
    tmp_path: Path, empty_database: str
) -> None:
    # Given the wheel, installed with its dependencies into a fresh virtual environment
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONVEYOR_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # Built from a copy: setuptools leaves build/ behind, and a stale one would be shipped.
    source = shutil.copytree(ROOT, tmp_path / "source", ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "*_cache", ".hypothesis", ".conveyor",
        "__pycache__", "artifacts"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", tmp_path / "dist",
         source, cwd=tmp_path, env=env)
    (wheel,) = (tmp_path / "dist").glob("conveyor-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    _run(venv / "bin" / "pip", "install", "--quiet", wheel, cwd=tmp_path, env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    installed = _run(venv / "bin" / "python", "-c", "import conveyor; print(conveyor.__file__)",
                     cwd=elsewhere, env=env)
    assert installed.startswith(str(venv)), installed

    # When it migrates a fresh database, from a folder outside the checkout
    migrated = _run(venv / "bin" / "conveyor", "migrate", cwd=elsewhere,
                    env={**env, "CONVEYOR_DATABASE_URL": empty_database})

    # Then every packaged migration is applied
    assert f"applied {len(MIGRATIONS)} migration(s)" in migrated
    with psycopg.connect(empty_database) as conn:
        applied = [r[0] for r in conn.execute("SELECT name FROM conveyor_migrations ORDER BY 1")]
    assert applied == MIGRATIONS

    # And the demo runs a job to completion on that database
    demo = _run(venv / "bin" / "conveyor", "dev", "--demo", "--exit-after-demo", cwd=elsewhere,
                env={**env, "CONVEYOR_DATABASE_URL": empty_database,
                     "CONVEYOR_WEBHOOKS_BIND": f"127.0.0.1:{free_port()}",
                     "CONVEYOR_API_BIND": f"127.0.0.1:{free_port()}"})
    assert "demo job finished: COMPLETED" in demo
