"""Prometheus metrics for the web apps: request counts and latencies, and `GET /metrics`.

Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR (before start) so
each scrape sums every worker; without it each process reports only itself.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
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

from conveyor.access import MissingTokenError
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


def measured(measure: Callable[[], Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """What a collector reads at scrape time; nothing when the database does not answer, so
    a scrape still gets every other series."""
    try:
        return list(measure())
    except Exception:
        return []


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
        for lag in measured(self.measure):
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


OTHER = "other"


def busiest(counts: Iterable[tuple[str, tuple[str, ...], float]],
            keep: int) -> dict[tuple[str, tuple[str, ...]], float]:
    """Series by (organisation, other labels), the `keep` organisations with the most in
    all kept by name and the rest summed under `other`: a bounded label set."""
    counts = list(counts)
    totals: dict[str, float] = {}
    for organization, _, value in counts:
        totals[organization] = totals.get(organization, 0) + value
    kept = set(sorted(totals, key=lambda o: (-totals[o], o))[:keep])
    series: dict[tuple[str, tuple[str, ...]], float] = {}
    for organization, labels, value in counts:
        key = (organization if organization in kept else OTHER, labels)
        series[key] = series.get(key, 0) + value
    return series


class TenantCollector(Collector):
    """Jobs by organisation and status, and rate-limit deferrals, from the metrics read
    model; the busiest `keep` organisations by name, the rest as `other`."""

    def __init__(self, measure: Callable[[], Iterable[dict[str, Any]]], keep: int) -> None:
        self.measure = measure
        self.keep = keep

    def collect(self) -> Iterable[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("conveyor_tenant_jobs", "Jobs of an organisation, by status.",
                                 labels=["organization", "status"])
        deferred = GaugeMetricFamily("conveyor_tenant_deferrals",
                                     "Stages of an organisation deferred by a rate limit.",
                                     labels=["organization"])
        counts = [(r["organization"], (r["status"],) if r["status"] else (), float(r["n"]))
                  for r in measured(self.measure)]
        for (organization, labels), value in busiest(counts, self.keep).items():
            if labels:
                jobs.add_metric([organization, *labels], value)
            else:
                deferred.add_metric([organization], value)
        yield jobs
        yield deferred


class MetricsResource:
    """`GET /metrics`: Prometheus text format.

    Open to scrapers while it names no organisation. Collectors that do (`private`) are
    served only with `token` set, and then `/metrics` answers only a request bearing it.
    """

    def __init__(self, *extra: Collector | None, private: Sequence[Collector] = (),
                 token: str | None = None) -> None:
        self.extra = [c for c in extra if c is not None]
        self.private = list(private) if token else []
        self.token = token

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.token is not None:
            scheme, _, given = (req.get_header("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.encode(), self.token.encode()):
                raise MissingTokenError(
                    "/metrics names organisations: send CONVEYOR_METRICS_TOKEN as "
                    "'Authorization: Bearer <token>'.")
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
        output = generate_latest(registry)
        if self.extra or self.private:
            own = CollectorRegistry()
            for collector in [*self.extra, *self.private]:
                own.register(collector)
            output += generate_latest(own)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = output


def instrument(app: falcon.App[Any, Any], app_name: str, *extra: Collector | None,
               private: Sequence[Collector] = (), token: str | None = None) -> None:
    """Count and time the app's requests and serve them, and any collectors, at `/metrics`."""
    app.add_middleware(PrometheusMiddleware(app_name))
    app.add_route("/metrics", MetricsResource(*extra, private=private, token=token))
