"""`conveyor dev`: every part in one process, on an embedded PostgreSQL and in-process broker.

The same code paths as production, with two substitutions: the `pgserver` package's
PostgreSQL (data under `.conveyor/`) for a configured server, and Dramatiq's in-process
broker and worker for RabbitMQ. The web apps are served by the standard library's WSGI
server in threads instead of gunicorn.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socketserver
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import dramatiq
import orjson
import psycopg

from conveyor.bootstrap import (
    build_api_app,
    build_jobs,
    build_projector,
    build_relay,
    build_webhooks_app,
    build_worker_broker,
)
from conveyor.http.webhooks.github import sample_github_delivery
from conveyor.migrate import migrate
from conveyor.settings import Settings, session_url

log = logging.getLogger(__name__)

DEV_GITHUB_SECRET = "conveyor-dev-secret"
DEV_API_TOKEN = "conveyor-dev-token"
DATA_DIR = Path(".conveyor") / "pgdata"


def _quiet_embedded_server(log_file: Path) -> None:
    # pgserver narrates every command it runs; a person running `make dev` wants
    # Conveyor's own lines, so the server's go to a file beside its data.
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    chatter = logging.getLogger("pgserver")
    chatter.addHandler(handler)
    chatter.propagate = False


def embedded_database(data_dir: Path = DATA_DIR) -> str:
    """Start (or reuse) the embedded PostgreSQL; return the URL of Conveyor's database."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _quiet_embedded_server(data_dir.parent / "pgserver.log")
    with warnings.catch_warnings():
        # platformdirs warns (for pgserver) that XDG_RUNTIME_DIR is unset; harmless.
        warnings.simplefilter("ignore", UserWarning)
        import pgserver

        server = pgserver.get_server(data_dir.resolve(), cleanup_mode="stop")
    url: str = server.get_uri()
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'conveyor'").fetchone():
            conn.execute("CREATE DATABASE conveyor")
    return url.replace("/postgres?", "/conveyor?")


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def _serve(app: Any, bind: str) -> WSGIServer:
    host, port = bind.rsplit(":", 1)
    server = make_server(host, int(port), app, _ThreadingWSGIServer, _QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def post_sample_webhook(url: str, secret: str, pull_request: int | None = None) -> tuple[int, Any]:
    """Post a signed sample GitHub `pull_request` delivery; return the status and JSON body."""
    headers, body = sample_github_delivery(secret, pull_request=pull_request)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read() or b"null")


def _get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def follow_demo(settings: Settings, token: str, timeout: float = 60.0) -> str:
    """Post a sample delivery, print each change of its job, and return its final status."""
    secret = settings.github_secret or DEV_GITHUB_SECRET
    status, answer = post_sample_webhook(
        f"http://{settings.webhooks_bind}/webhooks/github", secret,
        pull_request=int(time.time()) % 100_000,
    )
    print(f"POST /webhooks/github -> {status} {answer}", flush=True)
    url = f"http://{settings.api_bind}/workflow-queue/jobs/{answer['job_id']}"
    seen: tuple[Any, ...] = ()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _get_json(url, token)
        if job is not None:
            now = (job["status"], tuple(job["current_stages"]))
            if now != seen:
                seen = now
                print(f"job {job['job_id']}: {job['status']} {list(job['current_stages'])}",
                      flush=True)
                for wait in job.get("waiting_for") or []:
                    if wait.get("kind") != "event":
                        print(f"  held by the rate of {wait['resource']} until {wait['until']}",
                              flush=True)
                        continue
                    # A person plays the outside service: say exactly how.
                    deadline = time.monotonic() + timeout
                    print(_answer_hint(settings, token, wait), flush=True)
            if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                for stage in job["stages"]:
                    print(f"  {stage['stage']:<14} attempt {stage['attempt']} {stage['status']}")
                return str(job["status"])
        time.sleep(0.1)
    return "TIMEOUT"


def _answer_hint(settings: Settings, token: str, wait: dict[str, Any]) -> str:
    event = orjson.dumps({"id": f"demo-{wait['key']}", "type": wait["event_type"],
                          "key": wait["key"], "payload": {"demo": True}}).decode()
    return (
        f"  waiting for {wait['event_type']} {wait['key']} until {wait['deadline']}; answer:\n"
        f"  curl -X POST http://{settings.api_bind}/workflow-queue/events"
        f" -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json'"
        f" -d '{event}'"
    )


def run_dev(settings: Settings, *, demo: bool, exit_after_demo: bool) -> int:
    url = settings.database_url or embedded_database()
    migrate(session_url(url, settings.session_bounds, long_work=True))
    token = next(iter(settings.api_write_tokens), DEV_API_TOKEN)
    settings = dataclasses.replace(
        settings,
        database_url=url,
        github_secret=settings.github_secret or DEV_GITHUB_SECRET,
        api_read_tokens=settings.api_read_tokens | {token},
        api_write_tokens=settings.api_write_tokens | {token},
        # The dev token may also try the admin routes (tenants, tokens).
        api_admin_tokens=settings.api_admin_tokens | {token},
    )
    jobs = build_jobs(settings)
    broker = build_worker_broker(settings, lambda: jobs, jobs.workflows, in_process=True)
    dramatiq.set_broker(broker)
    broker.emit_after("process_boot")  # starts the stage time limits, as `dramatiq` does
    worker = dramatiq.Worker(broker, worker_threads=4)
    worker.start()
    relay = build_relay(settings, jobs, broker, in_process=True)
    threading.Thread(target=relay.run, daemon=True, name="relay").start()
    servers = [
        _serve(build_webhooks_app(settings, lambda: jobs), settings.webhooks_bind),
        _serve(build_api_app(settings, lambda: jobs, amqp_check=lambda: None),
               settings.api_bind),
    ]
    print(f"Conveyor dev: webhooks on http://{settings.webhooks_bind}, "
          f"API on http://{settings.api_bind} (token {token}), database {url}\n"
          f"Dashboard: http://{settings.api_bind}/ (sign in with {token})", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    with build_projector(settings) as projector:
        try:
            if demo:
                outcome = follow_demo(settings, token)
                print(f"demo job finished: {outcome}", flush=True)
                if exit_after_demo:
                    return 0 if outcome == "COMPLETED" else 1
            stopped.wait()
        except KeyboardInterrupt:
            pass
        finally:
            relay.stop()
            projector.stop()
            worker.stop()
            for server in servers:
                server.shutdown()
            jobs.close()
    return 0
