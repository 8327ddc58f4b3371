"""`conveyor jobs ...` and `conveyor events send`: an operator's commands, on `conveyor.client`.

They talk to the API (`CONVEYOR_API_URL`, `CONVEYOR_API_TOKEN`), never to the database.
Tables for people by default, `--json` for scripts. Exit codes a script can trust:
0 done, 1 the job FAILED or was CANCELLED, 2 usage (or a request the API refused as
malformed, forbidden or conflicting), 3 not found, 4 the API unreachable (or broken).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from conveyor.client import ApiError, Client, Job, NotFoundError, UnreachableError
from conveyor.errors import ConveyorError

DONE, FAILED, USAGE, NOT_FOUND, UNREACHABLE = 0, 1, 2, 3, 4
# A person waits for the answer: an API that is down is said within about 1.5 s.
ATTEMPTS = 4
_LIST_COLUMNS = ("job_id", "workflow", "status", "organization", "created_at")


def add_jobs_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--status", help="only jobs in this status (e.g. FAILED)")
    listing.add_argument("--organization", help="only jobs of this organisation")
    listing.add_argument("--workflow", help="only jobs of this workflow")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    show = sub.add_parser("show", help="one job: its state, outputs and result")
    show.add_argument("job_id")
    start = sub.add_parser("start", help="start a workflow (idempotent by --key)")
    start.add_argument("workflow")
    start.add_argument("--key", required=True, help="idempotency key: the same key, the same job")
    start.add_argument("--input", default="{}", metavar="JSON|@FILE",
                       help="the job's input: JSON, or @file.json")
    start.add_argument("--organization", help="the organisation to start it in")
    start.add_argument("--wait", action="store_true",
                       help="wait until it is finished or waits for an outside event")
    start.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                       help="with --wait: give up waiting after this long (exit 0, as it is)")
    for name in ("cancel", "retry"):
        sub.add_parser(name, help=f"{name} a job").add_argument("job_id")
    for command in sub.choices.values():
        command.add_argument("--json", action="store_true", help="print JSON, for scripts")


def add_events_arguments(parser: argparse.ArgumentParser) -> None:
    """`conveyor events` alone consumes from RabbitMQ, as before; `events send` posts one."""
    sub = parser.add_subparsers(dest="events_action")
    send = sub.add_parser("send", help="send one outside event through the API")
    send.add_argument("type", help="the event type, e.g. ast.task.completed")
    send.add_argument("key", help="the key the waiting job waits for, e.g. ast-<job id>")
    send.add_argument("--payload", default="null", metavar="JSON|@FILE")
    send.add_argument("--id", default=None,
                      help="the event's id (stored once per id); default: a new random one")
    send.add_argument("--json", action="store_true", help="print JSON, for scripts")


def run_jobs(args: argparse.Namespace) -> int:
    actions: dict[str, Callable[[Client, argparse.Namespace], int]] = {
        "list": _list, "show": _show, "start": _start, "cancel": _command, "retry": _command}
    return _with_client(lambda client: actions[args.action](client, args))


def run_send_event(args: argparse.Namespace) -> int:
    def send(client: Client) -> int:
        payload = _json_argument("--payload", args.payload)
        sent = client.send_event(args.id or str(uuid.uuid4()), args.type, args.key, payload)
        if args.json:
            _print_json({"id": sent.event_id, "duplicate": sent.duplicate})
        else:
            print(f"event {sent.event_id} {'was sent before' if sent.duplicate else 'sent'}")
        return DONE

    return _with_client(send)


def _with_client(action: Callable[[Client], int]) -> int:
    try:
        with Client(attempts=ATTEMPTS) as client:
            return action(client)
    except UsageError as error:
        print(f"conveyor: {error}", file=sys.stderr)
        return USAGE
    except NotFoundError as error:
        print(f"conveyor: {error.description or error}", file=sys.stderr)
        return NOT_FOUND
    except UnreachableError as error:
        print(f"conveyor: the API is unreachable: {error}", file=sys.stderr)
        return UNREACHABLE
    except ApiError as error:
        print(f"conveyor: {error}", file=sys.stderr)
        return UNREACHABLE if error.status >= 500 else USAGE


def _list(client: Client, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be 1 or more")
    jobs = []
    for job in client.list(status=args.status, organization=args.organization,
                           workflow=args.workflow, limit=min(args.limit, 200)):
        jobs.append(job)
        if len(jobs) == args.limit:
            break
    if args.json:
        _print_json([job.fields for job in jobs])
    else:
        _print_table(_LIST_COLUMNS, ([job.fields.get(c) for c in _LIST_COLUMNS] for job in jobs))
    return DONE


def _show(client: Client, args: argparse.Namespace) -> int:
    return _shown(client.get(args.job_id), args.json)


def _start(client: Client, args: argparse.Namespace) -> int:
    input = _json_argument("--input", args.input)
    if not isinstance(input, dict):
        raise UsageError("--input must be a JSON object")
    started = client.start(args.workflow, args.key, input, organization=args.organization)
    if not args.wait:
        if args.json:
            _print_json(vars(started))
        else:
            print(f"{'started' if started.created else 'already started'} {started.job_id}")
        return DONE
    if not args.json:
        print(f"{'started' if started.created else 'already started'} {started.job_id},"
              " waiting", file=sys.stderr)
    return _shown(client.wait(started.job_id, timeout=args.timeout), args.json)


def _command(client: Client, args: argparse.Namespace) -> int:
    (client.cancel if args.action == "cancel" else client.retry)(args.job_id)
    if args.json:
        _print_json({"job_id": args.job_id, "status": f"{args.action} accepted"})
    else:
        print(f"{args.action} of {args.job_id} accepted")
    return DONE


def _shown(job: Job, as_json: bool) -> int:
    if as_json:
        _print_json(job.fields)
    else:
        for name in ("job_id", "workflow", "status", "organization", "created_at",
                     "finished_at"):
            print(f"{name + ':':14} {job.fields.get(name) or '-'}")
        for name, value in (("waiting_for", job.waiting_for), ("error", job.error),
                            ("outputs", job.outputs), ("result", job.result)):
            if value:
                print(f"{name + ':':14} {orjson.dumps(value).decode()}")
    return FAILED if job.status in ("FAILED", "CANCELLED") else DONE


def _json_argument(option: str, value: str) -> Any:
    """A JSON option's value: the JSON itself, or `@path` to a file holding it."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as error:
            raise UsageError(f"{option}: cannot read {value[1:]}: {error.strerror}") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise UsageError(f"{option}: not JSON: {error}") from None


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _print_table(columns: tuple[str, ...], rows: Iterable[list[Any]]) -> None:
    cells = [[c.upper() for c in columns],
             *([("-" if v is None else str(v)) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
              .rstrip())


class UsageError(ConveyorError):
    """Raised when a command's option cannot be used (a file not there, JSON malformed)."""
