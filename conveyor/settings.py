"""Environment variables in, typed settings out: the one place configuration is read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from conveyor.errors import ConveyorError
from conveyor.tenancy import (
    DEFAULT_PRIORITY,
    InvalidTenantSettingError,
    TenantSettings,
    parse_max_running,
    parse_priority,
    parse_rates,
)

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
# The eventsourcing environment key carrying the sessions' libpq parameters.
SESSION_PARAMS = "CONVEYOR_POSTGRES_SESSION_PARAMS"


class SettingsError(ConveyorError, ValueError):
    """Raised when an environment variable holds a value Conveyor cannot use."""


@dataclass(frozen=True)
class SessionBounds:
    """How long one PostgreSQL session of Conveyor may keep the others waiting.

    Every event insert holds the events table's EXCLUSIVE lock until it commits, so one
    frozen process (SIGSTOP, a GC pause, a VM stall, a partition) in a transaction would
    freeze every writer. The server ends a transaction left idle for
    `idle_in_transaction` seconds; a lock not granted in `lock` seconds fails the statement
    (longer than the idle bound, so a writer queued behind a frozen one waits for the
    server to end it rather than failing); `statement` bounds any one statement; TCP
    keepalives let each side notice a peer that is gone. Whole seconds, as eventsourcing
    reads the first two; 0 turns a bound off.
    """

    idle_in_transaction: int = 1
    lock: int = 2
    statement: int = 10
    keepalives_idle: int = 5
    keepalives_interval: int = 2
    keepalives_count: int = 3
    # Seconds libpq waits for each host of the URL to answer a connect: a host that is gone
    # without refusing (a dead machine) is passed over for the next one, not waited on.
    connect: int = 5

    def params(self, *, long_work: bool = False) -> dict[str, str]:
        """The libpq parameters of a session; `long_work` (replay, migrate) is not timed.

        A rebuild's COPY, its wait for the live projector and a migration's wait for
        another migrator are legitimately long and block no writer of events.
        """
        idle, lock, statement = ((0, 0, 0) if long_work
                                 else (self.idle_in_transaction, self.lock, self.statement))
        server = {
            "idle_in_transaction_session_timeout": f"{idle}s",
            "lock_timeout": f"{lock}s",
            "statement_timeout": f"{statement}s",
            # The server's side of the keepalives: it notices a client that is gone.
            "tcp_keepalives_idle": self.keepalives_idle,
            "tcp_keepalives_interval": self.keepalives_interval,
            "tcp_keepalives_count": self.keepalives_count,
        }
        options = " ".join(f"-c {name}={value}" for name, value in server.items())
        return {
            "connect_timeout": str(self.connect),
            "keepalives": "1",
            "keepalives_idle": str(self.keepalives_idle),
            "keepalives_interval": str(self.keepalives_interval),
            "keepalives_count": str(self.keepalives_count),
            "options": options,
        }


@dataclass(frozen=True)
class Settings:
    """Everything a Conveyor process is configured with."""

    database_url: str | None = None
    # A standby the API reads its read models from (docs/architecture.md §10.1); None: the
    # primary, `database_url`.
    read_database_url: str | None = None
    # One node's URL, or several separated by commas, tried in order (conveyor/amqp.py).
    amqp_url: str = DEFAULT_AMQP_URL
    queue_name: str = "conveyor.stages"
    # `classic`, or `quorum` on a RabbitMQ cluster (docs/architecture.md §3.10): the stage
    # queues' and the outside-events queue's type.
    queue_type: str = "classic"
    github_secret: str | None = None
    gitlab_token: str | None = None
    bitbucket_secret: str | None = None
    azure_username: str | None = None
    azure_password: str | None = None
    api_read_tokens: frozenset[str] = field(default_factory=frozenset)
    api_write_tokens: frozenset[str] = field(default_factory=frozenset)
    api_admin_tokens: frozenset[str] = field(default_factory=frozenset)
    # What an organisation that has set nothing gets (conveyor/store/tenants.py).
    tenant_defaults: TenantSettings = field(
        default_factory=lambda: TenantSettings(priority=DEFAULT_PRIORITY))
    ast_analysis: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Seconds a webhook request may take to arrive whole before it is answered 408
    # (conveyor/http/worker.py); a platform sends its delivery in milliseconds.
    body_timeout: float = 5.0
    review_command: str = "@conveyor review"
    relay_poll_seconds: float = 1.0
    # Stage messages in flight at most, all tenants together (docs/architecture.md §3.7):
    # a few times the worker threads, so a burst waits in the relay's fair queue, not in
    # RabbitMQ ahead of everyone. None: no bound.
    dispatch_window: int | None = 64
    webhooks_bind: str = "127.0.0.1:3332"
    api_bind: str = "127.0.0.1:3331"
    # Four single-GIL processes with two threads each kept the API's p99 lowest on
    # two cores (bench/api.py); more threads per process only queue on the GIL.
    # One process each, threads for concurrency: the default topology's five processes
    # then peak under 300 MiB resident in all (bench/peers.py); scale out with more hosts
    # or these settings.
    web_workers: int = 1
    web_threads: int = 8
    worker_processes: int = 1
    worker_threads: int = 8
    events_exchange: str = "workflow.events"
    events_queue: str = "conveyor.outside-events"
    events_bindings: tuple[str, ...] = ("ast.task.completed",)
    events_prefetch: int = 64
    wait_retention_seconds: float = 24 * 3600.0
    max_recoveries: int = 3
    lease_grace_seconds: float = 10.0
    # A stage sent this long ago that never started lost its message (docs/architecture.md
    # §4.3): longer than Dramatiq's retries ride out (about 2.5 minutes) and than a message
    # waits in RabbitMQ behind the dispatch window.
    redispatch_after_seconds: float = 300.0
    max_redispatches: int = 3
    reference_review_seconds: float = 0.0
    workflow_modules: tuple[str, ...] = ()
    # The workflow a review-starting delivery enqueues; bench/peers.py points it at a
    # no-op workflow to measure Conveyor's own cost per stage.
    review_workflow: str = "code_review"
    ready_max_lag: int = 10_000
    worker_metrics_port: int | None = None
    # With a token, the API's `/metrics` answers only a request bearing it, and adds series
    # by organisation (the busiest `metrics_organizations` by name, the rest as `other`).
    metrics_token: str | None = None
    metrics_organizations: int = 20
    # Finished jobs older than this many days are archived by `conveyor archive`
    # (docs/architecture.md §8.4), into `archive_dir`; None keeps them forever.
    retention_days: int | None = None
    archive_dir: Path | None = None
    # Export OpenTelemetry traces over OTLP/HTTP (conveyor/tracing.py), as OTEL_* ask.
    traces: bool = False
    session_bounds: SessionBounds = field(default_factory=SessionBounds)

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

        def seconds(name: str, default: int) -> int:
            value = number(name, default, zero=True)
            if value != int(value):
                raise SettingsError(f"CONVEYOR_{name} must be whole seconds, not {value!r}")
            return int(value)

        def whole_days(name: str) -> int | None:
            value = number(name, 0, zero=True) if text(name) else None
            if value is not None and (value != int(value) or value < 1):
                raise SettingsError(f"CONVEYOR_{name} must be a whole number of days, at least"
                                    f" 1, not {text(name)!r} (unset: keep forever)")
            return None if value is None else int(value)

        def tenant_defaults() -> TenantSettings:
            try:
                max_running = text("TENANT_MAX_RUNNING")
                priority = text("TENANT_PRIORITY")
                return TenantSettings(
                    max_running=None if max_running is None
                    else parse_max_running(max_running, "CONVEYOR_TENANT_MAX_RUNNING"),
                    priority=DEFAULT_PRIORITY if priority is None
                    else parse_priority(priority, "CONVEYOR_TENANT_PRIORITY"),
                    rates=parse_rates([r for r in (text("TENANT_RATES") or "").split(",")
                                       if r.strip()], "CONVEYOR_TENANT_RATES"),
                )
            except InvalidTenantSettingError as error:
                raise SettingsError(str(error)) from None

        read_url = text("READ_DATABASE_URL")
        if read_url and urlsplit(read_url).scheme not in {"postgres", "postgresql"}:
            raise SettingsError("CONVEYOR_READ_DATABASE_URL must be a PostgreSQL URL, e.g."
                                " postgresql://user:password@standby:5432/conveyor")
        bounds = SessionBounds()
        admin_tokens = tokens("API_ADMIN_TOKENS")
        write_tokens = tokens("API_WRITE_TOKENS") | admin_tokens
        return cls(
            database_url=text("DATABASE_URL"),
            read_database_url=read_url,
            amqp_url=amqp_urls(text("AMQP_URL") or DEFAULT_AMQP_URL),
            queue_name=text("QUEUE_NAME") or cls.queue_name,
            queue_type=queue_type(text("QUEUE_TYPE") or cls.queue_type),
            github_secret=text("GITHUB_SECRET"),
            gitlab_token=text("GITLAB_TOKEN"),
            bitbucket_secret=text("BITBUCKET_SECRET"),
            azure_username=text("AZURE_USERNAME"),
            azure_password=text("AZURE_PASSWORD"),
            api_read_tokens=tokens("API_READ_TOKENS") | write_tokens,
            api_write_tokens=write_tokens,
            api_admin_tokens=admin_tokens,
            tenant_defaults=tenant_defaults(),
            ast_analysis=flag("AST_ANALYSIS"),
            max_body_bytes=int(number("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            body_timeout=number("BODY_TIMEOUT", cls.body_timeout),
            review_command=text("REVIEW_COMMAND") or cls.review_command,
            relay_poll_seconds=number("RELAY_POLL_SECONDS", cls.relay_poll_seconds),
            dispatch_window=int(number("DISPATCH_WINDOW", 64, zero=True)) or None,
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
            redispatch_after_seconds=number("REDISPATCH_AFTER_SECONDS",
                                            cls.redispatch_after_seconds),
            max_redispatches=int(number("MAX_REDISPATCHES", cls.max_redispatches)),
            reference_review_seconds=number("REFERENCE_REVIEW_SECONDS", 0.0, zero=True),
            workflow_modules=tuple(
                m.strip() for m in (text("WORKFLOW_MODULES") or "").split(",") if m.strip()
            ),
            review_workflow=text("REVIEW_WORKFLOW") or cls.review_workflow,
            ready_max_lag=int(number("READY_MAX_LAG", cls.ready_max_lag)),
            worker_metrics_port=(int(number("WORKER_METRICS_PORT", 1))
                                 if text("WORKER_METRICS_PORT") else None),
            metrics_token=text("METRICS_TOKEN"),
            metrics_organizations=int(number("METRICS_ORGANIZATIONS",
                                             cls.metrics_organizations)),
            retention_days=whole_days("RETENTION_DAYS"),
            archive_dir=Path(archive) if (archive := text("ARCHIVE_DIR")) else None,
            traces=traces_wanted(env),
            session_bounds=SessionBounds(
                idle_in_transaction=seconds("DB_IDLE_IN_TRANSACTION_TIMEOUT",
                                            bounds.idle_in_transaction),
                lock=seconds("DB_LOCK_TIMEOUT", bounds.lock),
                statement=seconds("DB_STATEMENT_TIMEOUT", bounds.statement),
                keepalives_idle=seconds("DB_KEEPALIVES_IDLE", bounds.keepalives_idle),
                keepalives_interval=seconds("DB_KEEPALIVES_INTERVAL",
                                            bounds.keepalives_interval),
                keepalives_count=int(number("DB_KEEPALIVES_COUNT", bounds.keepalives_count)),
            ),
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
        return postgres_env(self.require_database_url(), self.session_bounds)

    def require_archive_dir(self) -> Path:
        """Where archives go; a `SettingsError` saying what to set when it is not set."""
        if self.archive_dir is None:
            raise SettingsError(
                "CONVEYOR_ARCHIVE_DIR is not set: set it to the directory archived jobs are"
                " written to (a mounted volume that is backed up)")
        return self.archive_dir

    def session_url(self, *, long_work: bool = False) -> str:
        """The database URL every connection Conveyor opens itself goes to, bounds included."""
        return session_url(self.require_database_url(), self.session_bounds,
                           long_work=long_work)

    def read_session_url(self) -> str | None:
        """The standby's URL, bounds included, when the API reads from one."""
        if self.read_database_url is None:
            return None
        return session_url(self.read_database_url, self.session_bounds)


def node_urls(amqp_url: str) -> list[str]:
    """The node URLs of `CONVEYOR_AMQP_URL`, in the order to try them (comma separated)."""
    return [url.strip() for url in amqp_url.split(",") if url.strip()]


def amqp_urls(raw: str) -> str:
    """`CONVEYOR_AMQP_URL` checked: one or more amqp(s):// node URLs, separated by commas."""
    nodes = node_urls(raw)
    for url in nodes:
        if urlsplit(url).scheme not in {"amqp", "amqps"}:
            # The URL itself is not repeated: it may hold a password.
            raise SettingsError(
                "CONVEYOR_AMQP_URL must be amqp://user:password@host:port/vhost URLs of the"
                " RabbitMQ nodes, separated by commas, not one with the scheme"
                f" {urlsplit(url).scheme!r}")
    return ",".join(nodes)


def queue_type(raw: str) -> str:
    """`CONVEYOR_QUEUE_TYPE` checked: `classic` or `quorum`."""
    if raw.lower() not in {"classic", "quorum"}:
        raise SettingsError(f"CONVEYOR_QUEUE_TYPE must be classic or quorum, not {raw!r}")
    return raw.lower()


def traces_wanted(env: Mapping[str, str]) -> bool:
    """Whether the standard `OTEL_*` variables ask for traces exported over OTLP/HTTP.

    An OTLP endpoint, or `OTEL_TRACES_EXPORTER=otlp`, turns them on; `none`, or
    `OTEL_SDK_DISABLED=true`, keeps them off. Unset, nothing is exported and nothing of
    the SDK is loaded.
    """
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter not in ("", "otlp", "none"):
        raise SettingsError(f"OTEL_TRACES_EXPORTER must be otlp or none (Conveyor exports"
                            f" OTLP over HTTP), not {exporter!r}")
    # The traces' own protocol, when set, is the one the exporter uses.
    name = next((n for n in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
                 if env.get(n, "").strip()), None)
    if name is not None and env[name].strip() != "http/protobuf":
        raise SettingsError(f"{name} must be http/protobuf (Conveyor exports OTLP over"
                            f" HTTP), not {env[name].strip()!r}")
    if exporter:
        return exporter == "otlp"
    return any(env.get(name, "").strip() for name in
               ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def session_url(url: str, bounds: SessionBounds | None = None, *,
                long_work: bool = False) -> str:
    """`url` with the sessions' bounds as libpq parameters; the URL's own ones win."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in (bounds or SessionBounds()).params(long_work=long_work).items():
        query.setdefault(name, value)
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def postgres_env(url: str, bounds: SessionBounds | None = None) -> dict[str, str]:
    """Translate a PostgreSQL URL into eventsourcing's `POSTGRES_*` variables.

    libpq parses the URL (`conninfo_to_dict`), so a multi-host URL
    (`postgresql://u@a:5432,b:5433/db?target_session_attrs=read-write`) keeps its host and
    port lists, which the library passes to libpq as they are; its other parameters
    (`target_session_attrs`, `sslmode`, ...) go with the sessions' bounds.
    """
    # Here, not at the top: the commands that only talk to the API never load psycopg.
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    scheme = urlsplit(url).scheme
    if scheme not in {"postgres", "postgresql"}:
        # The URL itself is not repeated: it may hold a password.
        raise SettingsError(
            "CONVEYOR_DATABASE_URL must be a PostgreSQL URL, postgresql://user:password@host:port/"
            f"database, not one with the scheme {scheme!r}"
        )
    try:
        params = {name: str(value) for name, value in conninfo_to_dict(url).items()}
    except ProgrammingError:
        raise SettingsError(
            "CONVEYOR_DATABASE_URL is not a valid PostgreSQL URL: write it as postgresql://"
            "user:password@host:port/database, several hosts as host1:port1,host2:port2"
        ) from None
    bounds = bounds or SessionBounds()
    own = {name: params.pop(name, "") for name in ("dbname", "host", "port", "user", "password")}
    return {
        # eventsourcing's PostgreSQL module, its sessions bounded (conveyor/store/postgres.py).
        "PERSISTENCE_MODULE": "conveyor.store.postgres:Factory",
        "POSTGRES_DBNAME": own["dbname"] or "postgres",
        "POSTGRES_HOST": own["host"] or "127.0.0.1",
        # libpq's list of ports, one a host (one for all); "," when the URL names none.
        "POSTGRES_PORT": own["port"] if own["port"].strip(",") else "5432",
        "POSTGRES_USER": own["user"] or "postgres",
        # Must be present even when empty, or the library raises OSError.
        "POSTGRES_PASSWORD": own["password"],
        # Migrations own the schema; the library must not create tables.
        "CREATE_TABLE": "n",
        # One session kept per process, up to nine under load: four kept sessions in
        # each of the default topology's 13 processes took it past PostgreSQL's default
        # 100 connections at the start of a burst (104 measured with bench.peers).
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": "8",
        "POSTGRES_CONNECT_TIMEOUT": "5",
        # No ping on every checkout (it doubled the round trips of a webhook); the
        # library retries an operation whose pooled connection turns out dead.
        "POSTGRES_PRE_PING": "n",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(bounds.idle_in_transaction),
        "POSTGRES_LOCK_TIMEOUT": str(bounds.lock),
        # The rest of the bounds, which the library has no variable for, and the URL's
        # own parameters, which win.
        SESSION_PARAMS: urlencode(bounds.params() | params, quote_via=quote),
    }
