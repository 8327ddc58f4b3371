"""The `conveyor` command: one subcommand per process, plus `dev` to run them all at once."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from conveyor import logs, tracing
from conveyor.settings import Settings, SettingsError

log = logging.getLogger("conveyor")


def _on_sigterm(stop: Callable[[], None]) -> None:
    def handle(signum: int, frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _stopped_while_waiting(settings: Settings, *, rabbitmq: bool = False,
                           queues: Sequence[str] = ()) -> bool:
    """Wait for the database (and the broker) to be up; True if asked to stop meanwhile.

    `queues`, the stage queues the process uses, are declared with `CONVEYOR_QUEUE_TYPE`
    first, so a queue of another type stops it with one line (`QueueTypeError`).
    """
    from conveyor.startup import wait_for_postgres, wait_for_rabbitmq

    stop = threading.Event()
    _on_sigterm(stop.set)
    up = wait_for_postgres(settings.session_url(), stop)
    if up and rabbitmq:
        up = wait_for_rabbitmq(settings.amqp_url, stop)
    if up and queues:
        from conveyor.amqp import check_stage_queues

        check_stage_queues(settings.amqp_url, settings.queue_type, queues)
    return not up


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.migrate import migrate

    if _stopped_while_waiting(settings):
        return 0
    applied = migrate(settings.session_url(long_work=True))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none'}")
    return 0


def _gunicorn(factory: str, bind: str) -> int:
    argv = [
        sys.executable, "-m", "gunicorn", "-c", "python:conveyor.gunicorn_conf",
        "--bind", bind, f"conveyor.http.wsgi:{factory}()",
    ]
    os.execv(sys.executable, argv)


def cmd_webhooks(settings: Settings, args: argparse.Namespace) -> int:
    # No wait: the app serves liveness and answers 503 while the database is away.
    return _gunicorn("webhooks", settings.webhooks_bind)


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    return _gunicorn("api", settings.api_bind)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.bootstrap import load_workflows, worker_queues

    queues = worker_queues(settings, load_workflows(settings))
    if _stopped_while_waiting(settings, rabbitmq=True, queues=queues):
        return 0
    if settings.worker_processes == 1:
        from conveyor.actors import inprocess

        return inprocess.run(settings, queues)
    argv = [
        sys.executable, "-m", "dramatiq", "conveyor.actors.worker",
        "--processes", str(settings.worker_processes),
        "--threads", str(settings.worker_threads),
        "--queues", *queues,
    ]
    os.execv(sys.executable, argv)


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.bootstrap import build_jobs, build_relay

    if _stopped_while_waiting(settings, rabbitmq=True, queues=[settings.queue_name]):
        return 0
    jobs = build_jobs(settings)
    relay = build_relay(settings, jobs)
    _on_sigterm(relay.stop)
    relay.run()
    relay.close()
    jobs.close()
    tracing.shutdown()
    return 0


def cmd_events(settings: Settings, args: argparse.Namespace) -> int:
    if args.events_action == "send":
        from conveyor.api_cli import run_send_event

        return run_send_event(args)
    from conveyor.bootstrap import build_jobs
    from conveyor.outside_events.consumer import run_consumer

    if _stopped_while_waiting(settings, rabbitmq=True):
        return 0
    jobs = build_jobs(settings)
    run_consumer(settings, jobs)
    jobs.close()
    return 0


def cmd_projector(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.bootstrap import build_projector

    if _stopped_while_waiting(settings):
        return 0
    with build_projector(settings) as runner:
        _on_sigterm(runner.stop)
        runner.run_forever()
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.replay import run_replay

    if _stopped_while_waiting(settings):
        return 0
    return run_replay(settings, args)


def cmd_archive(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.retention.archive import run_archive

    return run_archive(settings, args)


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.api_cli import run_jobs

    return run_jobs(args)


def cmd_tokens(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.manage import run_tokens

    return run_tokens(settings, args)


def cmd_tenants(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.manage import run_tenants

    return run_tenants(settings, args)


def cmd_schedules(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.schedules_cli import cmd_schedules as run

    return run(settings, args)


def cmd_workflows(settings: Settings, args: argparse.Namespace) -> int:
    if args.workflows_action == "migrate":
        from conveyor.migrating import run_migrate

        return run_migrate(settings, args)
    from conveyor.versions import run_workflows

    return run_workflows(settings, args)


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.dev import run_dev

    return run_dev(settings, demo=args.demo, exit_after_demo=args.exit_after_demo)


def cmd_sample_webhook(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.dev import DEV_GITHUB_SECRET, post_sample_webhook

    secret = settings.github_secret or DEV_GITHUB_SECRET
    status, body = post_sample_webhook(args.url, secret, pull_request=args.pull_request)
    print(status, body)
    return 0 if status < 300 else 1


# The commands that cannot start without a database to connect to.
NEEDS_DATABASE = frozenset({"migrate", "webhooks", "api", "worker", "relay", "projector",
                            "replay", "events", "tokens", "tenants", "schedules",
                            "workflows", "archive"})

COMMANDS: dict[str, tuple[Callable[[Settings, argparse.Namespace], int], str]] = {
    "migrate": (cmd_migrate, "apply the packaged SQL migrations in order, once each"),
    "webhooks": (cmd_webhooks, "serve the webhook app under gunicorn"),
    "api": (cmd_api, "serve the REST API under gunicorn"),
    "worker": (cmd_worker, "run Dramatiq workers for the stages"),
    "relay": (cmd_relay, "dispatch ready stages and fire timers (one active)"),
    "projector": (cmd_projector, "keep the read models up to date"),
    "replay": (cmd_replay, "rebuild or verify read models; show a job as it was"),
    "archive": (cmd_archive, "archive finished jobs past their retention to files and remove"
                             " them from the store"),
    "events": (cmd_events, "consume outside events from the workflow.events exchange;"
                           " `events send` sends one through the API"),
    "jobs": (cmd_jobs, "list, show, start, cancel and retry jobs through the API"),
    "tokens": (cmd_tokens, "create, list and revoke the API's tokens"),
    "tenants": (cmd_tenants, "set and show organisations' limits, priorities and rates"),
    "schedules": (cmd_schedules, "list, pause, resume and trigger cron schedules"),
    "workflows": (cmd_workflows, "list each workflow's versions, their jobs in flight and"
                                 " workers, and which have drained; `workflows migrate`"
                                 " moves a version's jobs onto the current one"),
    "dev": (cmd_dev, "run everything in one process on an embedded PostgreSQL"),
    "sample-webhook": (cmd_sample_webhook, "post a signed sample GitHub delivery"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if name == "dev":
            command.add_argument("--demo", action="store_true",
                                 help="post a sample delivery and follow its job")
            command.add_argument("--exit-after-demo", action="store_true",
                                 help="stop once the demo job is finished")
        if name == "replay":
            from conveyor.replay import add_arguments

            add_arguments(command)
        if name == "archive":
            from conveyor.retention.archive import add_arguments as add_archive_arguments

            add_archive_arguments(command)
        if name in ("tokens", "tenants"):
            from conveyor.manage import add_tenant_arguments, add_token_arguments

            (add_token_arguments if name == "tokens" else add_tenant_arguments)(command)
        if name in ("jobs", "events"):
            from conveyor.api_cli import add_events_arguments, add_jobs_arguments

            (add_jobs_arguments if name == "jobs" else add_events_arguments)(command)
        if name == "schedules":
            from conveyor.schedules_cli import add_schedule_arguments

            add_schedule_arguments(command)
        if name == "workflows":
            from conveyor.migrating import add_workflow_arguments

            add_workflow_arguments(command)
        if name == "sample-webhook":
            command.add_argument("--url", default="http://127.0.0.1:3332/webhooks/github")
            command.add_argument("--pull-request", type=int, default=None)
    args = parser.parse_args(argv)
    logs.configure()
    try:
        settings = Settings.from_env()
        # `events send` goes through the API, as `jobs` does: no database of its own.
        if args.command in NEEDS_DATABASE and not getattr(args, "events_action", None):
            settings.eventsourcing_env()  # a missing or malformed URL is said here, once
        return COMMANDS[args.command][0](settings, args)
    except SettingsError as error:
        # Misconfiguration is the operator's to fix: one line that says what to set.
        print(f"conveyor {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

