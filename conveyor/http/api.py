"""The REST API (`conveyor api`): the read side from projections, commands, health, metrics."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import falcon

from conveyor.access import Grant
from conveyor.application import Jobs
from conveyor.bootstrap import build_jobs, load_schedules
from conveyor.http import access_api, health, jobs_api, schedules_api
from conveyor.http.auth import BearerAuth, CachedLookup, development_grants
from conveyor.http.correlation import CorrelationMiddleware
from conveyor.http.gate import DatabaseGate
from conveyor.http.media import create_json_app
from conveyor.http.openapi import OpenApiResource
from conveyor.http.prometheus import (
    LagCollector,
    QueueDepthCollector,
    TenantCollector,
    instrument,
)
from conveyor.http.reads import ReadModels
from conveyor.http.scoping import TenantScope
from conveyor.http.standby import ReadLag
from conveyor.http.ui import add_dashboard
from conveyor.http.waiting import JobWaiter
from conveyor.http.workflows_api import MigrationResource, WorkflowsResource
from conveyor.outside_events.http import OutsideEventsResource
from conveyor.projections.lag import measure_lag
from conveyor.scheduler import Scheduler
from conveyor.settings import Settings
from conveyor.store.schedules import ScheduleStore
from conveyor.store.tenants import TenantStore
from conveyor.store.tokens import TokenStore


def create_app(
    settings: Settings | None = None,
    jobs: Callable[[], Jobs] | None = None,
    *,
    amqp_check: Callable[[], None] | None = None,
    max_lag: int | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the API app; gunicorn calls this in each worker, after the fork."""
    settings = settings or Settings.from_env()
    if settings.database_url is None:
        raise RuntimeError("CONVEYOR_DATABASE_URL is not set")
    # The application (and its pool) is built on first use, so after any fork.
    commands = jobs or functools.cache(functools.partial(build_jobs, settings))
    # Tokens, tenants and schedules are written, and read, on the primary; the read models
    # are read from the standby when there is one (docs/architecture.md §10.1).
    primary = ReadModels(settings.session_url())
    standby = settings.read_session_url()
    reads = primary if standby is None else ReadModels(standby, primary=primary)
    read_lag = None if standby is None else ReadLag(reads.connection)

    def lags() -> list[dict[str, Any]]:
        return [lag.as_dict() for lag in measure_lag(commands())]

    gate = DatabaseGate(settings.session_url())
    tokens = TokenStore(primary.connection)
    tenants = TenantStore(primary.connection, settings.tenant_defaults)

    def find_token(token: str) -> Grant | None:
        gate.check()  # an outage answers 503 at once, not after the pool's timeout
        return tokens.find(token)

    development = development_grants(settings.api_read_tokens, settings.api_write_tokens,
                                     settings.api_admin_tokens)
    middleware: list[Any] = [CorrelationMiddleware(),
                             BearerAuth(development, CachedLookup(find_token)), gate,
                             TenantScope(reads)]
    if read_lag is not None:
        middleware.append(read_lag)
    app = create_json_app(middleware)
    instrument(app, "api", LagCollector(lags),
               QueueDepthCollector(settings.amqp_url, settings.queue_name),
               private=[TenantCollector(reads.tenant_counts, settings.metrics_organizations)],
               token=settings.metrics_token)
    app.add_route("/workflow-queue/jobs", jobs_api.JobsResource(reads, commands))
    waiter = JobWaiter(settings.session_url(), limit=max(1, settings.web_threads - 2))
    job = jobs_api.JobResource(reads, commands, waiter)
    app.add_route("/workflow-queue/jobs/{job_id:uuid}", job)
    app.add_route("/workflow-queue/jobs/{job_id:uuid}/cancel", job, suffix="cancel")
    app.add_route("/workflow-queue/jobs/{job_id:uuid}/retry", job, suffix="retry")
    app.add_route("/workflow-queue/jobs/{job_id:uuid}/history", jobs_api.HistoryResource(reads))
    app.add_sink(jobs_api.malformed_job_id, jobs_api.MALFORMED_JOB_ID)
    app.add_route("/workflow-queue/metrics", jobs_api.MetricsResource(reads, lags))
    app.add_route("/workflow-queue/events", OutsideEventsResource(commands))
    app.add_route("/health/live", health.LiveResource())
    app.add_route("/health/ready", health.ReadyResource(
        reads, amqp_check or health.amqp_check(settings.amqp_url), lags,
        settings.ready_max_lag if max_lag is None else max_lag,
        database=gate.check,
        standby=None if read_lag is None else read_lag.seconds))
    app.add_route("/openapi.json", OpenApiResource())
    app.add_route("/workflow-queue/whoami", access_api.WhoAmIResource())
    app.add_route("/workflow-queue/tokens", access_api.TokensResource(tokens))
    app.add_route("/workflow-queue/tokens/{name}", access_api.TokenResource(tokens))
    app.add_route("/workflow-queue/tenants", access_api.TenantsResource(tenants))
    app.add_route("/workflow-queue/organizations",
                  access_api.OrganizationsResource(tenants, reads.deferrals))
    app.add_route("/workflow-queue/tenants/{organization}", access_api.TenantResource(tenants))
    scheduler = functools.cache(lambda: Scheduler(
        commands(), ScheduleStore(primary.connection), load_schedules(settings)))
    app.add_route("/workflow-queue/schedules", schedules_api.SchedulesResource(scheduler))
    one = schedules_api.ScheduleResource(scheduler)
    app.add_route("/workflow-queue/schedules/{name}", one)
    for action in ("pause", "resume", "trigger"):
        app.add_route(f"/workflow-queue/schedules/{{name}}/{action}", one, suffix=action)
    app.add_route("/workflow-queue/workflows",
                  WorkflowsResource(reads, lambda: commands().workflows))
    app.add_route("/workflow-queue/workflows/{workflow}/migrate",
                  MigrationResource(reads, commands))
    add_dashboard(app)
    return app
