"""Worker observability: each stage message's correlation id and organisation in the logs,
its metrics, and its span in the job's trace.

Stage durations and outcomes are Prometheus metrics; `conveyor worker` serves them on
CONVEYOR_WORKER_METRICS_PORT when it is set. Dramatiq runs several worker processes: the
first to bind the port serves it, and with PROMETHEUS_MULTIPROC_DIR set it sums them all.

Each stage message is a span (`stage <name>`) under the job's traceparent, which the relay
put in the message's options: Dramatiq has no maintained OpenTelemetry instrumentation, so
this middleware is its propagation (docs/architecture.md §13).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextvars import ContextVar, Token
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client import start_http_server as _start_http_server

from conveyor import logs, tracing

log = logging.getLogger(__name__)

STAGE_RUNS = Counter("conveyor_stage_runs_total", "Stage messages handled, by outcome.",
                     ["stage", "outcome"])
STAGE_DURATION = Histogram("conveyor_stage_duration_seconds",
                           "Time a worker spent on a stage message.", ["stage", "outcome"],
                           buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                                    600))

# What the stage message being handled came to. The actor reports it here rather than
# returning it: Dramatiq warns about every return value when no results backend is set.
_outcome: ContextVar[str | None] = ContextVar("stage_outcome", default=None)


def report_outcome(outcome: str) -> None:
    """Tell the observer what the stage message being handled came to (the actor calls it)."""
    _outcome.set(outcome)


class StageObserver(dramatiq.Middleware):
    """Sets the log correlation id and organisation from the message's options, counts and
    times it, and spans it in its job's trace."""

    def __init__(self) -> None:
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker,
                               message: MessageProxy) -> None:
        value = message.options.get("correlation_id")
        token = logs.correlation_id.set(value if isinstance(value, str) else None)
        tenant = message.options.get("organization")
        tenant_token = logs.organization.set(tenant if isinstance(tenant, str) else None)
        _outcome.set(None)
        span = tracing.start(
            f"stage {_stage_of(message)}", parent=message.options.get("traceparent"),
            kind="CONSUMER", attributes=_attributes_of(message))
        self._local.handling = (token, tenant_token, time.perf_counter(), span)

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        self._finish(message, "error" if exception is not None else _outcome.get() or "done",
                     exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._finish(message, "skipped")

    def _finish(self, message: MessageProxy, outcome: str,
                exception: BaseException | None = None) -> None:
        handling: tuple[Token[str | None], Token[str | None], float, tracing.Span] | None = (
            getattr(self._local, "handling", None))
        if handling is None:
            return
        self._local.handling = None
        token, tenant_token, started, span = handling
        stage = _stage_of(message)
        STAGE_RUNS.labels(stage, outcome).inc()
        STAGE_DURATION.labels(stage, outcome).observe(time.perf_counter() - started)
        span.set({"conveyor.outcome": outcome})
        if exception is not None:
            span.fail(f"{type(exception).__name__}: {exception}")
        span.end()
        logs.organization.reset(tenant_token)
        logs.correlation_id.reset(token)


def _stage_of(message: MessageProxy) -> str:
    return str(message.args[1]) if len(message.args) > 1 else str(message.actor_name)


def _attributes_of(message: MessageProxy) -> dict[str, str | int]:
    """The stage span's first attributes: the attempt's ids, from `run_stage`'s arguments."""
    if len(message.args) < 3:
        return {"messaging.message.id": message.message_id}
    job_id, stage, attempt = message.args[:3]
    return {"conveyor.job_id": str(job_id), "conveyor.stage": str(stage),
            "conveyor.attempt": int(attempt), "messaging.message.id": message.message_id}


def serve_metrics(port: int | None, addr: str = "0.0.0.0") -> bool:
    """Serve this process's (or, multiprocess, every worker's) metrics; False if not served."""
    if port is None:
        return False
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        _start_http_server(port, addr=addr, registry=registry)
    except OSError as error:
        log.info("worker metrics port %d already served (%s); not serving it here", port, error)
        return False
    return True
