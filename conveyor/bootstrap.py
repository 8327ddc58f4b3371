"""The composition root: every process's objects, built from settings and the registered workflows.

Each `build_*` function builds one process's object graph; `cli.py`, `dev.py`, the
worker module and the WSGI factories only call them. Workflows are loaded once per
process from `CONVEYOR_WORKFLOW_MODULES`, so everything built from the same settings
(the application's plans and the `run_stage` actor's time limit alike) sees the same
stages.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any

from conveyor import tracing
from conveyor.application import Jobs
from conveyor.schedules import Schedule
from conveyor.settings import Settings, SettingsError
from conveyor.workflows import WORKFLOWS, Stage, Workflow, skipped_stages

# Each process imports only what its own `build_*` needs: Falcon (6 MiB resident), Dramatiq
# and pika (3 MiB) are not loaded into processes that never use them (issue 11, memory).
if TYPE_CHECKING:
    import dramatiq
    import falcon

    from conveyor.projections.runner import BatchRunner
    from conveyor.rate_gate import RateGate
    from conveyor.relay.relay import Relay
    from conveyor.scheduler import Scheduler

    App = falcon.App[falcon.Request, falcon.Response]

Workflows = Mapping[str, Workflow]

__all__ = [
    "build_api_app",
    "build_jobs",
    "build_projector",
    "build_rate_gate",
    "build_relay",
    "build_scheduler",
    "build_webhooks_app",
    "build_worker_broker",
    "load_schedules",
    "load_workflows",
    "served_versions",
    "worker_queues",
]


def _registered_modules(settings: Settings) -> list[ModuleType]:
    """The modules `CONVEYOR_WORKFLOW_MODULES` names, imported."""
    modules = []
    for name in settings.workflow_modules:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise SettingsError(
                f"CONVEYOR_WORKFLOW_MODULES names {name!r}, which cannot be imported ({error});"
                " set it to importable module names, comma-separated"
            ) from None
    return modules


def load_workflows(settings: Settings) -> dict[str, Workflow]:
    """The built-in workflows plus those of `CONVEYOR_WORKFLOW_MODULES`.

    Each named module is imported and every `Workflow` at its top level is registered,
    so a team adds its own workflows without changing Conveyor.
    """
    workflows = dict(WORKFLOWS)
    for module in _registered_modules(settings):
        for value in vars(module).values():
            if isinstance(value, Workflow):
                workflows[value.name] = value
    return workflows


def load_schedules(settings: Settings) -> dict[str, Schedule]:
    """Every `Schedule` at the top level of the `CONVEYOR_WORKFLOW_MODULES` modules."""
    return {value.name: value for module in _registered_modules(settings)
            for value in vars(module).values() if isinstance(value, Schedule)}


def build_jobs(settings: Settings, workflows: Workflows | None = None) -> Jobs:
    """The command-side application, configured as the settings say."""
    return Jobs(
        env=settings.eventsourcing_env(),
        workflows=load_workflows(settings) if workflows is None else workflows,
        skip_stages=skipped_stages(ast_analysis=settings.ast_analysis),
    )


def _lazy_jobs(settings: Settings, workflows: Workflows | None = None) -> Callable[[], Jobs]:
    # Built on first use, so inside each worker process and never before a fork.
    return functools.cache(functools.partial(build_jobs, settings, workflows))


def build_rate_gate(settings: Settings, jobs: Jobs) -> RateGate:
    """A worker process's gate on the tenants' rate limits, over the application's pool."""
    from conveyor.rate_gate import RateGate, TenantRates
    from conveyor.store import datastore_of
    from conveyor.store.rates import RateBucketStore
    from conveyor.store.tenants import TenantStore

    connect = datastore_of(jobs).get_connection
    return RateGate(TenantRates(TenantStore(connect, settings.tenant_defaults)),
                    RateBucketStore(connect))


def longest_time_limit(workflows: Workflows) -> float:
    """The longest time limit of any registered stage, in seconds."""
    return max((stage.time_limit for workflow in workflows.values() for stage in workflow),
               default=Stage.time_limit)


def served_versions(workflows: Workflows) -> dict[str, str]:
    """The version of each workflow this process's code runs: {workflow: version}."""
    return {name: workflow.version for name, workflow in workflows.items()}


def worker_queues(settings: Settings, workflows: Workflows) -> list[str]:
    """The queues a worker consumes: its workflow versions' (docs/architecture.md §3.9), and
    the unversioned one, whose messages it forwards to their version's queue."""
    from conveyor.actors.broker import version_queue

    return [settings.queue_name, *(version_queue(settings.queue_name, name, version)
                                   for name, version in served_versions(workflows).items())]


def build_worker_broker(
    settings: Settings,
    jobs: Callable[[], Jobs] | None = None,
    workflows: Workflows | None = None,
    *,
    in_process: bool = False,
) -> dramatiq.Broker:
    """The broker a worker consumes from, with `run_stage` declared, observed and rate limited.

    The actor's time limit is the longest of the registered workflows' stages, so a
    stage of a `CONVEYOR_WORKFLOW_MODULES` workflow runs as long as it declares.
    """
    from conveyor.actors.advertise import Advertiser
    from conveyor.actors.broker import build_broker, declare_run_stage
    from conveyor.actors.observe import StageObserver

    tracing.configure(settings.traces, "conveyor-worker")
    workflows = load_workflows(settings) if workflows is None else workflows
    broker = build_broker(settings, in_process=in_process)
    broker.add_middleware(StageObserver())
    # `conveyor dev`'s worker too: else its API shows every job waiting for its version.
    broker.add_middleware(Advertiser(settings, served_versions(workflows)))
    for queue in worker_queues(settings, workflows):
        broker.declare_queue(queue)
    jobs = jobs or _lazy_jobs(settings, workflows)
    declare_run_stage(
        broker, settings.queue_name, jobs,
        time_limit=longest_time_limit(workflows), lease_grace=settings.lease_grace_seconds,
        gate=functools.cache(lambda: build_rate_gate(settings, jobs())),
    )
    return broker


def build_relay(settings: Settings, jobs: Jobs, broker: dramatiq.Broker | None = None,
                *, in_process: bool = False) -> Relay:
    """The relay, sending each batch's `run_stage` messages to RabbitMQ at once.

    In process (`conveyor dev`) it sends through `broker`'s `enqueue`, one by one, and
    there is no RabbitMQ to publish outside requests to, so they are logged for a person
    to answer.
    """
    from conveyor.actors.broker import build_broker
    from conveyor.relay.admission import Admission, TenantLimits
    from conveyor.relay.dispatch import ConfirmedSender
    from conveyor.relay.publisher import LogPublisher, Publisher, RabbitPublisher
    from conveyor.relay.relay import Relay
    from conveyor.store import datastore_of
    from conveyor.store.tenants import TenantStore

    tracing.configure(settings.traces, "conveyor-relay")
    publisher: Publisher = (LogPublisher() if in_process
                            else RabbitPublisher(settings.amqp_url, settings.events_exchange))
    tenants = TenantStore(datastore_of(jobs).get_connection, settings.tenant_defaults)
    limits = TenantLimits(lambda: {t.organization: t.effective for t in tenants.all()},
                          settings.tenant_defaults, jobs.clock, settings.relay_poll_seconds)
    return Relay(
        jobs, broker or build_broker(settings), settings.queue_name,
        settings.session_url(), publisher=publisher,
        sender=None if in_process else ConfirmedSender(settings.amqp_url,
                                                            queue_type=settings.queue_type),
        poll_seconds=settings.relay_poll_seconds,
        retention=timedelta(seconds=settings.wait_retention_seconds),
        max_recoveries=settings.max_recoveries,
        redispatch_after=timedelta(seconds=settings.redispatch_after_seconds),
        max_redispatches=settings.max_redispatches,
        admission=Admission(limits, settings.dispatch_window, jobs.clock),
        scheduler=build_scheduler(settings, jobs),
    )


def build_scheduler(settings: Settings, jobs: Jobs) -> Scheduler:
    """The schedules' use cases over the application's pool, with the code's schedules."""
    from conveyor.scheduler import Scheduler
    from conveyor.store import datastore_of
    from conveyor.store.schedules import ScheduleStore

    return Scheduler(jobs, ScheduleStore(datastore_of(jobs).get_connection),
                     load_schedules(settings),
                     grace=timedelta(seconds=max(2 * settings.relay_poll_seconds, 1.5)))


def build_projector(settings: Settings, names: Sequence[str] | None = None,
                    batch_size: int = 1000) -> BatchRunner:
    """A runner following the log into the named projections (all), from their positions."""
    from conveyor.projections.runner import PROJECTIONS, BatchRunner, build_projection, follower_of

    names = tuple(PROJECTIONS) if names is None else names
    app = build_jobs(settings)
    follower = follower_of(app)
    return BatchRunner(app, [build_projection(n, app, follower) for n in names],
                       batch_size=batch_size, listen_url=settings.session_url(),
                       close_app=True)


def build_webhooks_app(settings: Settings, jobs: Callable[[], Jobs] | None = None) -> App:
    """The webhook app; the application is built on first use unless given."""
    from conveyor.http.webhooks import app as webhooks_app

    tracing.configure(settings.traces, "conveyor-webhooks")
    return webhooks_app.create_app(settings, jobs or _lazy_jobs(settings))


def build_api_app(settings: Settings, jobs: Callable[[], Jobs] | None = None,
                  **options: Any) -> App:
    """The REST API; `options` pass through to `create_app` (`amqp_check`, `max_lag`)."""
    from conveyor.http import api as api_app

    settings.require_database_url()
    tracing.configure(settings.traces, "conveyor-api")
    return api_app.create_app(settings, jobs or _lazy_jobs(settings), **options)
