"""The read side's access to projection tables; GET handlers never load aggregates."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

_JOB_COLUMNS = (
    "job_id, workflow, status, platform, repository, pull_request, head_commit, trigger,"
    " current_stages, stages, error, next_attempt_at, version, created_at, started_at,"
    " finished_at, updated_at"
)


class ReadModels:
    """Queries over the read models, through a small pool opened on first use."""

    def __init__(self, database_url: str, max_size: int = 4) -> None:
        self._pool: ConnectionPool[Any] = ConnectionPool(
            database_url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=5,
            kwargs={"row_factory": dict_row, "autocommit": True},
        )
        self._opened = False

    def _connection(self) -> Any:
        if not self._opened:
            self._pool.open()
            self._opened = True
        return self._pool.connection()

    def job(self, job_id: UUID) -> dict[str, Any] | None:
        with self._connection() as conn:
            row: dict[str, Any] | None = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = %s", (job_id,)
            ).fetchone()
            return row

    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        self._pool.close()
