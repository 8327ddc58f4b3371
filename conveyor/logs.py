"""Structured logs: one JSON object a line, from every process."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

# The correlation id of the request (or message) being handled, for every log line
# written while handling it; set by the HTTP middleware.
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
# The organisation of the job being handled (a stage message, a webhook delivery), for
# every log line written meanwhile; a line may name another with `extra={"organization":}`.
organization: ContextVar[str | None] = ContextVar("organization", default=None)
# The trace and span ids of the span being handled, when tracing is on (`conveyor.tracing`).
trace: ContextVar[tuple[str, str] | None] = ContextVar("trace", default=None)


class JsonFormatter(logging.Formatter):
    """Format a record as a JSON line: time, level, logger, process, message, and the
    correlation id, organisation, trace and span of the work being handled, when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        current = correlation_id.get()
        if current is not None:
            entry["correlation_id"] = current
        span = trace.get()
        if span is not None:
            entry["trace_id"], entry["span_id"] = span
        tenant = getattr(record, "organization", None) or organization.get()
        if tenant is not None:
            entry["organization"] = tenant
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
