"""The `conveyor` command: one subcommand per process, plus `dev` to run them all at once."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from conveyor import logs
from conveyor.settings import Settings

log = logging.getLogger("conveyor")


def _on_sigterm(stop: Callable[[], None]) -> None:
    def handle(signum: int, frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.migrate import migrate

    if settings.database_url is None:
        raise SystemExit("CONVEYOR_DATABASE_URL is not set")
    applied = migrate(settings.database_url)
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none'}")
    return 0


def _gunicorn(factory: str, bind: str) -> int:
    argv = [
        sys.executable, "-m", "gunicorn", "-c", "python:conveyor.gunicorn_conf",
        "--bind", bind, f"conveyor.http.wsgi:{factory}()",
    ]
    os.execv(sys.executable, argv)


def cmd_webhooks(settings: Settings, args: argparse.Namespace) -> int:
    return _gunicorn("webhooks", settings.webhooks_bind)


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    return _gunicorn("api", settings.api_bind)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    argv = [
        sys.executable, "-m", "dramatiq", "conveyor.actors.worker",
        "--processes", os.environ.get("CONVEYOR_WORKER_PROCESSES", "2"),
        "--threads", os.environ.get("CONVEYOR_WORKER_THREADS", "4"),
        "--queues", settings.queue_name,
    ]
    os.execv(sys.executable, argv)


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.actors.broker import build_broker
    from conveyor.bootstrap import build_jobs, wait_retention
    from conveyor.relay.publisher import RabbitPublisher
    from conveyor.relay.relay import Relay

    assert settings.database_url is not None, "CONVEYOR_DATABASE_URL is not set"
    jobs = build_jobs(settings)
    publisher = RabbitPublisher(settings.amqp_url, settings.events_exchange)
    relay = Relay(jobs, build_broker(settings), settings.queue_name, settings.database_url,
                  publisher=publisher, poll_seconds=settings.relay_poll_seconds,
                  retention=wait_retention(settings), max_recoveries=settings.max_recoveries)
    _on_sigterm(relay.stop)
    relay.run()
    publisher.close()
    jobs.close()
    return 0


def cmd_events(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.bootstrap import build_jobs
    from conveyor.outside_events.consumer import run_consumer

    jobs = build_jobs(settings)
    run_consumer(settings, jobs)
    jobs.close()
    return 0


def cmd_projector(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.projections.runner import projections_runner

    with projections_runner(settings) as runner:
        _on_sigterm(runner.stop)
        runner.run_forever()
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.replay import run_replay

    return run_replay(settings, args)


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.dev import run_dev

    return run_dev(settings, demo=args.demo, exit_after_demo=args.exit_after_demo)


def cmd_sample_webhook(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.dev import DEV_GITHUB_SECRET, post_sample_webhook

    secret = settings.github_secret or DEV_GITHUB_SECRET
    status, body = post_sample_webhook(args.url, secret, pull_request=args.pull_request)
    print(status, body)
    return 0 if status < 300 else 1


COMMANDS: dict[str, tuple[Callable[[Settings, argparse.Namespace], int], str]] = {
    "migrate": (cmd_migrate, "apply migrations/*.sql in order, once each"),
    "webhooks": (cmd_webhooks, "serve the webhook app under gunicorn"),
    "api": (cmd_api, "serve the REST API under gunicorn"),
    "worker": (cmd_worker, "run Dramatiq workers for the stages"),
    "relay": (cmd_relay, "dispatch ready stages and fire timers (one active)"),
    "projector": (cmd_projector, "keep the read models up to date"),
    "replay": (cmd_replay, "rebuild or verify read models; show a job as it was"),
    "events": (cmd_events, "consume outside events from the workflow.events exchange"),
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
        if name == "sample-webhook":
            command.add_argument("--url", default="http://127.0.0.1:3332/webhooks/github")
            command.add_argument("--pull-request", type=int, default=None)
    args = parser.parse_args(argv)
    logs.configure()
    return COMMANDS[args.command][0](Settings.from_env(), args)


if __name__ == "__main__":
    raise SystemExit(main())

