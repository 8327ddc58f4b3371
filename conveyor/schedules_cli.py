"""`conveyor schedules list|pause|resume|trigger NAME`, on the database as `conveyor tenants`.

Exit codes: 0 done, 3 no schedule of that name.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from conveyor.schedules import ScheduleNotFoundError
from conveyor.settings import Settings

__all__ = ["add_schedule_arguments", "cmd_schedules"]


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every schedule: next and last fire, last run's status")
    for action, text in (("pause", "fire nothing until resumed"),
                         ("resume", "fire again, counting ticks from now"),
                         ("trigger", "start the schedule's workflow now")):
        sub.add_parser(action, help=text).add_argument("name")


def cmd_schedules(settings: Settings, args: argparse.Namespace) -> int:
    from conveyor.bootstrap import build_jobs, build_scheduler

    jobs = build_jobs(settings)
    try:
        scheduler = build_scheduler(settings, jobs)
        if args.action == "list":
            # The cron reads in the schedule's zone; the fire times are in UTC.
            print(f"{'NAME':24} {'CRON':18} {'ZONE':16} {'WORKFLOW':18} {'NEXT FIRE':25} "
                  f"{'LAST FIRED':25} LAST RUN")
            for state, next_fire in scheduler.list():
                s = state.schedule
                print(f"{s.name:24} {s.cron:18} {s.timezone:16} {s.workflow:18} "
                      f"{'paused' if state.paused else _time(next_fire):25} "
                      f"{_time(state.last_fired_at):25} {state.last_status or '-'}")
        elif args.action == "trigger":
            print(scheduler.trigger(args.name, by="cli").job_id)
        else:
            (scheduler.pause if args.action == "pause" else scheduler.resume)(args.name)
            print(f"{args.name}: {args.action}d")
    except ScheduleNotFoundError as error:
        print(f"conveyor schedules {args.action}: {error}", file=sys.stderr)
        return 3
    finally:
        jobs.close()
    return 0


def _time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")
