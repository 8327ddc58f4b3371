"""Apply `conveyor/migrations/*.sql` in order, each once, safely from several processes at once.

The SQL ships inside the package and is read with `importlib.resources`, so an
installed wheel migrates the same as a checkout.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from importlib.resources.abc import Traversable

import psycopg

log = logging.getLogger(__name__)

MIGRATIONS = files("conveyor") / "migrations"
# Any constant works; it only has to be the same in every process that migrates.
_LOCK_KEY = 0x636F6E76  # "conv"


def migrate(database_url: str, directory: Traversable = MIGRATIONS) -> list[str]:
    """Apply the migrations not yet applied; return their names."""
    scripts = sorted((f for f in directory.iterdir() if f.name.endswith(".sql")),
                     key=lambda f: f.name)
    if not scripts:
        raise FileNotFoundError(f"no migrations in {directory}")
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        # A session lock, so a second migrator waits, then finds nothing to do.
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS conveyor_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM conveyor_migrations")}
            for path in scripts:
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO conveyor_migrations (name) VALUES (%s)", (path.name,))
                log.info("applied migration %s", path.name)
                applied.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied
