"""Environment variables in, typed settings out: the one place configuration is read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from conveyor.errors import ConveyorError

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024


class SettingsError(ConveyorError, ValueError):
    """Raised when an environment variable holds a value Conveyor cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything a Conveyor process is configured with."""

    database_url: str | None = None
    amqp_url: str = DEFAULT_AMQP_URL
    queue_name: str = "conveyor.stages"
    github_secret: str | None = None
    gitlab_token: str | None = None
    bitbucket_secret: str | None = None
    azure_username: str | None = None
    azure_password: str | None = None
    api_read_tokens: frozenset[str] = field(default_factory=frozenset)
    api_write_tokens: frozenset[str] = field(default_factory=frozenset)
    ast_analysis: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Seconds a webhook request may take to arrive whole before it is answered 408
    # (conveyor/http/worker.py); a platform sends its delivery in milliseconds.
    body_timeout: float = 5.0
    review_command: str = "@conveyor review"
    relay_poll_seconds: float = 1.0
    webhooks_bind: str = "127.0.0.1:3332"
    api_bind: str = "127.0.0.1:3331"
    # Four single-GIL processes with two threads each kept the API's p99 lowest on
    # two cores (bench/api.py); more threads per process only queue on the GIL.
    web_workers: int = 4
    web_threads: int = 2
    worker_processes: int = 2
    worker_threads: int = 4
    events_exchange: str = "workflow.events"
    events_queue: str = "conveyor.outside-events"
    events_bindings: tuple[str, ...] = ("ast.task.completed",)
    events_prefetch: int = 64
    wait_retention_seconds: float = 24 * 3600.0
    max_recoveries: int = 3
    lease_grace_seconds: float = 10.0
    reference_review_seconds: float = 0.0
    workflow_modules: tuple[str, ...] = ()
    # The workflow a review-starting delivery enqueues; bench/peers.py points it at a
    # no-op workflow to measure Conveyor's own cost per stage.
    review_workflow: str = "code_review"
    ready_max_lag: int = 10_000
    worker_metrics_port: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `CONVEYOR_*` variables, with safe defaults for the rest."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(f"CONVEYOR_{name}", "").strip()
            return value or None

        def tokens(name: str) -> frozenset[str]:
            return frozenset(t.strip() for t in (text(name) or "").split(",") if t.strip())

        def number(name: str, default: float, *, zero: bool = False) -> float:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"CONVEYOR_{name} must be a number, not {raw!r}") from None
            if value < 0 or (value == 0 and not zero):
                raise SettingsError(f"CONVEYOR_{name} must be positive, not {raw!r}")
            return value

        def flag(name: str) -> bool:
            raw = (text(name) or "off").lower()
            if raw not in {"on", "off", "true", "false", "1", "0", "yes", "no"}:
                raise SettingsError(f"CONVEYOR_{name} must be on or off, not {raw!r}")
            return raw in {"on", "true", "1", "yes"}

        write_tokens = tokens("API_WRITE_TOKENS")
        return cls(
            database_url=text("DATABASE_URL"),
            amqp_url=text("AMQP_URL") or DEFAULT_AMQP_URL,
            queue_name=text("QUEUE_NAME") or cls.queue_name,
            github_secret=text("GITHUB_SECRET"),
            gitlab_token=text("GITLAB_TOKEN"),
            bitbucket_secret=text("BITBUCKET_SECRET"),
            azure_username=text("AZURE_USERNAME"),
            azure_password=text("AZURE_PASSWORD"),
            api_read_tokens=tokens("API_READ_TOKENS") | write_tokens,
            api_write_tokens=write_tokens,
            ast_analysis=flag("AST_ANALYSIS"),
            max_body_bytes=int(number("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            body_timeout=number("BODY_TIMEOUT", cls.body_timeout),
            review_command=text("REVIEW_COMMAND") or cls.review_command,
            relay_poll_seconds=number("RELAY_POLL_SECONDS", cls.relay_poll_seconds),
            webhooks_bind=text("WEBHOOKS_BIND") or cls.webhooks_bind,
            api_bind=text("API_BIND") or cls.api_bind,
            web_workers=int(number("WEB_WORKERS", cls.web_workers)),
            web_threads=int(number("WEB_THREADS", cls.web_threads)),
            worker_processes=int(number("WORKER_PROCESSES", cls.worker_processes)),
            worker_threads=int(number("WORKER_THREADS", cls.worker_threads)),
            events_exchange=text("EVENTS_EXCHANGE") or cls.events_exchange,
            events_queue=text("EVENTS_QUEUE") or cls.events_queue,
            events_bindings=tuple(
                b.strip() for b in (text("EVENTS_BINDINGS") or "").split(",") if b.strip()
            ) or cls.events_bindings,
            events_prefetch=int(number("EVENTS_PREFETCH", cls.events_prefetch)),
            wait_retention_seconds=number("WAIT_RETENTION_SECONDS", cls.wait_retention_seconds),
            max_recoveries=int(number("MAX_RECOVERIES", cls.max_recoveries)),
            lease_grace_seconds=number("LEASE_GRACE_SECONDS", cls.lease_grace_seconds),
            reference_review_seconds=number("REFERENCE_REVIEW_SECONDS", 0.0, zero=True),
            workflow_modules=tuple(
                m.strip() for m in (text("WORKFLOW_MODULES") or "").split(",") if m.strip()
            ),
            review_workflow=text("REVIEW_WORKFLOW") or cls.review_workflow,
            ready_max_lag=int(number("READY_MAX_LAG", cls.ready_max_lag)),
            worker_metrics_port=(int(number("WORKER_METRICS_PORT", 1))
                                 if text("WORKER_METRICS_PORT") else None),
        )

    def require_database_url(self) -> str:
        """The PostgreSQL URL; a `SettingsError` saying what to set when there is none."""
        if self.database_url is None:
            raise SettingsError(
                "CONVEYOR_DATABASE_URL is not set: set it to the PostgreSQL URL, e.g."
                " postgresql://user:password@host:5432/conveyor (or run `conveyor dev`)"
            )
        return self.database_url

    def eventsourcing_env(self) -> dict[str, str]:
        """The environment the eventsourcing library reads its PostgreSQL settings from."""
        return postgres_env(self.require_database_url())


def postgres_env(url: str) -> dict[str, str]:
    """Translate a PostgreSQL URL into eventsourcing's `POSTGRES_*` variables."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        # The URL itself is not repeated: it may hold a password.
        raise SettingsError(
            "CONVEYOR_DATABASE_URL must be a PostgreSQL URL, postgresql://user:password@host:port/"
            f"database, not one with the scheme {parts.scheme!r}"
        )
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    host = unquote(query.get("host") or parts.hostname or "127.0.0.1")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        # Must be present even when empty, or the library raises OSError.
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        # Migrations own the schema; the library must not create tables.
        "CREATE_TABLE": "n",
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "8",
        "POSTGRES_CONNECT_TIMEOUT": "5",
        # No ping on every checkout (it doubled the round trips of a webhook); the
        # library retries an operation whose pooled connection turns out dead.
        "POSTGRES_PRE_PING": "n",
    }

