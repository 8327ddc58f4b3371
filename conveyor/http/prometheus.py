"""Prometheus metrics for the web apps: request counts and latencies, and `GET /metrics`.

Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR (before start) so
each scrape sums every worker; without it each process reports only itself.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from conveyor.http.health import quick_amqp

REQUESTS = Counter("conveyor_http_requests_total", "HTTP requests answered.",
                   ["app", "method", "route", "status"])
LATENCY = Histogram("conveyor_http_request_duration_seconds", "Time to answer a request.",
                    ["app", "method", "route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


class PrometheusMiddleware:
    """Counts and times every request by route template, so ids do not explode the labels."""

    def __init__(self, app_name: str) -> None:
        self.app_name = app_name

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        started = req.context.get("started")
        if started is None:
            return
        route = req.uri_template or "unmatched"
        REQUESTS.labels(self.app_name, req.method, route, resp.status_code).inc()
        LATENCY.labels(self.app_name, req.method, route).observe(time.perf_counter() - started)


class LagCollector(Collector):
    """Projection lag, measured at scrape time."""

    def __init__(self, measure: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self.measure = measure

    def collect(self) -> Iterable[GaugeMetricFamily]:
        events = GaugeMetricFamily("conveyor_projection_lag_events",
                                   "Events a projection is behind the log.", labels=["projection"])
        seconds = GaugeMetricFamily("conveyor_projection_lag_seconds",
                                    "Age of the oldest event a projection has not applied.",
                                    labels=["projection"])
        try:
            lags = list(self.measure())
        except Exception:
            lags = []
        for lag in lags:
            events.add_metric([lag["projection"]], lag["events_behind"])
            seconds.add_metric([lag["projection"]], lag["seconds_behind"])
        yield events
        yield seconds


class QueueDepthCollector(Collector):
    """Messages ready in the stage queue (a passive declare), remembered for a few seconds."""

    def __init__(self, amqp_url: str, queue_name: str, ttl: float = 5.0,
                 timeout: float = 2.0) -> None:
        self.amqp_url = amqp_url
        self.queue_name = queue_name
        self.ttl = ttl
        self.timeout = timeout
        self._lock = threading.Lock()
        self._at = -1e9
        self._depth: int | None = None

    def depth(self) -> int | None:
        """The queue's ready messages, or None when RabbitMQ or the queue is not there."""
        with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._depth = self._declare()
                self._at = time.monotonic()
            return self._depth

    def _declare(self) -> int | None:
        import pika  # only the API's metrics read the queue depth (2 MiB resident)

        try:
            connection = pika.BlockingConnection(quick_amqp(self.amqp_url, self.timeout))
        except Exception:
            return None
        try:
            declared = connection.channel().queue_declare(self.queue_name, passive=True)
            return int(declared.method.message_count)
        except Exception:
            return None
        finally:
            if connection.is_open:
                connection.close()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = self.depth()
        family = GaugeMetricFamily("conveyor_queue_depth",
                                   "Stage messages waiting in RabbitMQ for a worker.",
                                   labels=["queue"])
        if depth is not None:
            family.add_metric([self.queue_name], depth)
        yield family


class MetricsResource:
    """`GET /metrics`: Prometheus text format, open to scrapers."""

    def __init__(self, *extra: Collector | None) -> None:
        self.extra = [c for c in extra if c is not None]

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
        output = generate_latest(registry)
        if self.extra:
            own = CollectorRegistry()
            for collector in self.extra:
                own.register(collector)
            output += generate_latest(own)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = output


def instrument(app: falcon.App[Any, Any], app_name: str, extra: Collector | None = None,
               *more: Collector) -> None:
    """Count and time the app's requests and serve them, and any collectors, at `/metrics`."""
    app.add_middleware(PrometheusMiddleware(app_name))
    app.add_route("/metrics", MetricsResource(extra, *more))
