"""OpenTelemetry traces: one trace per job, carried between processes as a W3C traceparent.

The request that starts a job is its trace's root; the job records the root's traceparent
(`Job.Enqueued`), the relay copies it into each `run_stage` message's options, and every
process makes its spans children of it (docs/architecture.md §13). Dramatiq has no
maintained instrumentation, so the context is carried by hand, as a plain string.

Off unless the `OTEL_*` variables ask for OTLP (`Settings.traces`): then nothing of the SDK
is imported, no exporter runs and every helper here returns at once. On, the SDK and the
OTLP/HTTP exporter are imported at the first span of each process (after any fork), and
read their own `OTEL_*` variables (endpoint, headers, batch delays, sampler).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor import logs

Attributes = Mapping[str, str | int | float | bool]

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


@dataclass(frozen=True)
class TraceParent:
    """A W3C trace context (`version-trace_id-parent_id-flags`), as the header carries it."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @classmethod
    def parse(cls, value: object) -> TraceParent | None:
        """The trace context in `value`, or None when it is not a valid traceparent.

        Invalid contexts are ignored, as the W3C recommendation says: a caller's broken
        header starts no error, only no link.
        """
        if not isinstance(value, str):
            return None
        found = _TRACEPARENT.fullmatch(value.strip())
        if found is None:
            return None
        version, trace_id, span_id, flags, rest = found.groups()
        if version == "ff" or (version == "00" and rest):
            return None
        if trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        return cls(trace_id, span_id, flags)

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def valid_traceparent(value: object) -> str | None:
    """`value` as a traceparent to keep (a header's, say), or None when it is not valid."""
    parsed = TraceParent.parse(value)
    return None if parsed is None else str(parsed)


class Span:
    """A started span, or none at all (`NO_SPAN`) when tracing is off or there is no trace."""

    def __init__(self, span: Any = None, token: Any = None) -> None:
        self._span = span
        self._tokens = token

    @property
    def traceparent(self) -> str | None:
        """This span's context as a traceparent, for its children in other processes."""
        if self._span is None:
            return None
        context = self._span.get_span_context()
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"

    def set(self, attributes: Attributes) -> None:
        if self._span is not None:
            self._span.set_attributes(dict(attributes))

    def fail(self, error: str) -> None:
        """Mark the span failed with `error`, as a trace viewer shows errors."""
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_attribute("conveyor.error", error)
            self._span.set_status(Status(StatusCode.ERROR, error))

    def end(self) -> None:
        """End the span and leave its context (the log fields and OTel's current span)."""
        if self._span is None:
            return
        self._span.end()
        if self._tokens is not None:
            from opentelemetry import context

            log_token, otel_token = self._tokens
            self._tokens = None
            context.detach(otel_token)
            logs.trace.reset(log_token)


NO_SPAN = Span()


class _Tracing:
    """This process's tracer provider, made at its first span (after any fork)."""

    def __init__(self) -> None:
        self.enabled = False
        self.service = "conveyor"
        self.provider: Any = None
        self.lock = threading.Lock()

    def tracer(self) -> Any:
        if not self.enabled:
            return None
        if self.provider is None:
            with self.lock:
                if self.provider is None:
                    self.provider = _otlp_provider(self.service)
        return self.provider.get_tracer("conveyor")


_tracing = _Tracing()


def configure(enabled: bool, service: str) -> None:
    """Trace this process (as `service`) when `enabled`; a process's builder calls it."""
    _tracing.enabled = enabled
    _tracing.service = service


def install(provider: Any) -> None:
    """Trace into `provider` (an SDK `TracerProvider`), for tests that read spans back."""
    _tracing.enabled = provider is not None
    _tracing.provider = provider


def enabled() -> bool:
    return _tracing.enabled


def shutdown() -> None:
    """Export what is buffered; a process calls it as it exits."""
    if _tracing.provider is not None:
        _tracing.provider.shutdown()


def _otlp_provider(service: str) -> Any:
    import os

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME, when set, names every process alike; else each its own.
    given = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
    provider = TracerProvider(resource=Resource.create(given))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def start(
    name: str,
    *,
    parent: str | None = None,
    root: bool = False,
    kind: str = "INTERNAL",
    attributes: Attributes | None = None,
) -> Span:
    """Start a span under `parent` (a traceparent), made current until it ends.

    Without a valid parent no span is started, unless `root`: work of a job that has no
    trace (enqueued while tracing was off) stays untraced rather than scattered in traces
    of its own. `kind` is an OTel `SpanKind` name (SERVER, CONSUMER, INTERNAL).
    """
    tracer = _tracing.tracer()
    found = TraceParent.parse(parent)
    if tracer is None or (found is None and not root):
        return NO_SPAN
    from opentelemetry import context, trace

    span = tracer.start_span(name, context=_context_of(found), kind=trace.SpanKind[kind],
                             attributes=dict(attributes or {}))
    ids = span.get_span_context()
    log_token = logs.trace.set((f"{ids.trace_id:032x}", f"{ids.span_id:016x}"))
    return Span(span, (log_token, context.attach(trace.set_span_in_context(span))))


def current() -> Span:
    """The span this thread is in (a stage's, a request's), for what only the work knows."""
    if not _tracing.enabled:
        return NO_SPAN
    from opentelemetry import trace

    return Span(trace.get_current_span())


def record(
    name: str,
    *,
    parent: str | None,
    start: datetime,
    end: datetime,
    attributes: Attributes | None = None,
    links: Sequence[str | None] = (),
    error: str | None = None,
) -> None:
    """Export a span whose times are known only afterwards (a wait, a job's whole run).

    `links` are traceparents of other traces that caused it (the outside event that
    resumed a wait); invalid or missing ones are left out.
    """
    tracer = _tracing.tracer()
    found = TraceParent.parse(parent)
    if tracer is None or found is None:
        return
    from opentelemetry import trace

    linked = [trace.Link(_span_context(p)) for p in map(TraceParent.parse, links) if p]
    span = tracer.start_span(name, context=_context_of(found), links=linked,
                             attributes=dict(attributes or {}), start_time=_nanos(start))
    if error:
        Span(span).fail(error)
    span.end(end_time=_nanos(end))


def _nanos(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000_000)


def _span_context(parent: TraceParent) -> Any:
    from opentelemetry import trace

    return trace.SpanContext(int(parent.trace_id, 16), int(parent.span_id, 16), is_remote=True,
                             trace_flags=trace.TraceFlags(int(parent.flags, 16)))


def _context_of(parent: TraceParent | None) -> Any:
    """The OTel context whose current span is `parent`; an empty one starts a new trace."""
    from opentelemetry import context, trace

    if parent is None:
        return context.Context()
    return trace.set_span_in_context(trace.NonRecordingSpan(_span_context(parent)))
