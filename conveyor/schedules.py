"""Cron schedules: which ticks are due, and which of them to fire (docs/architecture.md §3.8).

Pure arithmetic over an injected `now`: the relay asks `Schedule.due` once a poll, with
the last tick it fired (the `schedules` row's cursor), and enqueues one job per tick
under `tick_key`, so the job's id derives from the schedule and the tick and a tick
fired twice finds the same job. Cron expressions are croniter's, with seconds as an
optional sixth field; a schedule's ticks are reckoned in its time zone (a spring-forward
gap's tick fires at the hour after it, a fall-back hour's ticks fire in both offsets)
and handled in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from conveyor.errors import ConveyorError

__all__ = ["CatchUp", "Overlap", "Schedule", "ScheduleError", "ScheduleExistsError",
           "ScheduleNotFoundError",
           "SchedulesError", "schedule", "tick_key", "window_of"]

# A schedule's name goes into URLs and into its ticks' keys (`tick_key`), before the '@'.
_NAME = re.compile(r"[^\s/@]{1,200}")
InputOf = Callable[[datetime], dict[str, Any]]


class CatchUp(StrEnum):
    """What a schedule does with the ticks it missed while no relay ran."""

    SKIP = "skip"  # fire none of them
    LATEST = "latest"  # fire the latest of them, once
    ALL = "all"  # fire every one within the schedule's window


class Overlap(StrEnum):
    """What a tick does while the schedule's previous run is still going."""

    SKIP = "skip"  # the tick fires nothing
    ALLOW = "allow"  # the runs overlap
    CANCEL = "cancel"  # the previous run is cancelled, the tick's run starts


@dataclass(frozen=True)
class Schedule:
    """A workflow started on a cron schedule; declared in code or stored through the API."""

    name: str
    cron: str
    workflow: str
    input: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    catch_up: CatchUp = CatchUp.SKIP
    # With `CatchUp.ALL`, how far back missed ticks still fire (None: all of them).
    window: timedelta | None = None
    overlap: Overlap = Overlap.SKIP
    # Builds a tick's input, for a schedule declared on a function (`@schedule(...)`).
    input_of: InputOf | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ScheduleError("A schedule's name is 1 to 200 characters, without spaces,"
                                f" '/' or '@': {self.name!r}.")
        if not croniter.is_valid(self.cron):
            raise ScheduleError(f"Schedule {self.name!r}: {self.cron!r} is not a cron expression.")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(
                f"Schedule {self.name!r}: {self.timezone!r} is not a time zone.") from None
        for attribute, kind in (("catch_up", CatchUp), ("overlap", Overlap)):
            value = getattr(self, attribute)
            if value not in {member.value for member in kind}:
                raise ScheduleError(f"Schedule {self.name!r}: {attribute} must be one of "
                                    f"{', '.join(member.value for member in kind)}.")
            object.__setattr__(self, attribute, kind(value))
        if self.window is not None and self.window <= timedelta(0):
            raise ScheduleError(f"Schedule {self.name!r}: window must be positive.")
        if self.window is not None and self.catch_up is not CatchUp.ALL:
            raise ScheduleError(f"Schedule {self.name!r}: a window bounds catch_up='all' only;"
                                " leave it out or set catch_up='all'.")

    def __call__(self, input_of: InputOf) -> Schedule:
        """Declare the schedule on the function that builds each tick's input."""
        return replace(self, input_of=input_of)

    def input_for(self, tick: datetime) -> dict[str, Any]:
        return dict(self.input) if self.input_of is None else self.input_of(tick)

    def ticks(self, after: datetime) -> Iterator[datetime]:
        """The ticks strictly after `after`, in UTC, in order, without end."""
        zone = ZoneInfo(self.timezone)
        times = croniter(self.cron, after.astimezone(zone))
        while True:
            yield times.get_next(datetime).astimezone(UTC)

    def next_tick(self, after: datetime) -> datetime:
        return next(self.ticks(after))

    def due(self, last: datetime, now: datetime, grace: timedelta) -> list[datetime]:
        """The ticks to fire at `now`, the last one fired being `last`.

        A tick is on time within `grace` of its time and always fires; the earlier ones
        were missed and fire as the catch-up policy says. A clock stepped back fires
        nothing until it passes `last` again.
        """
        passed = []
        for tick in self.ticks(last):
            if tick > now:
                break
            passed.append(tick)
        if not passed:
            return []
        if self.catch_up is CatchUp.LATEST:
            return passed[-1:]
        if self.catch_up is CatchUp.ALL:
            oldest = None if self.window is None else now - self.window
            return [tick for tick in passed
                    if oldest is None or tick >= oldest or now - tick <= grace]
        return [tick for tick in passed if now - tick <= grace]


def schedule(
    name: str,
    *,
    cron: str,
    workflow: str,
    input: dict[str, Any] | None = None,
    timezone: str = "UTC",
    catch_up: CatchUp | str = CatchUp.SKIP,
    window: timedelta | None = None,
    overlap: Overlap | str = Overlap.SKIP,
) -> Schedule:
    """Declare a schedule; kept at a module's top level, it is registered as workflows are.

    Used as a decorator, the decorated function builds each tick's input from its time.
    """
    # Checked and converted to the enums by `Schedule.__post_init__`.
    return Schedule(name, cron, workflow, dict(input or {}), timezone,
                    cast(CatchUp, catch_up), window, cast(Overlap, overlap))


# The longest catch-up window accepted: a year of missed ticks is already more than any use.
MAX_WINDOW = timedelta(days=366)


def window_of(seconds: object) -> timedelta | None:
    """A catch-up window from seconds as submitted (None: none); ScheduleError if not one."""
    if seconds is None:
        return None
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not 0 < seconds <= MAX_WINDOW.total_seconds()):
        raise ScheduleError(f"window_seconds must be a number of seconds above 0, at most "
                            f"{MAX_WINDOW.total_seconds():.0f}.")
    return timedelta(seconds=seconds)


def tick_key(name: str, tick: datetime) -> str:
    """The idempotency key of a tick's job: the schedule and the tick's time in UTC."""
    return f"schedule:{name}@{tick.astimezone(UTC).isoformat()}"


class SchedulesError(ConveyorError):
    """The root of the schedules' errors."""


class ScheduleError(SchedulesError, ValueError):
    """Raised when a schedule is declared or submitted with an invalid field."""


class ScheduleNotFoundError(SchedulesError, LookupError):
    """Raised when no schedule has the name asked for."""


class ScheduleExistsError(SchedulesError):
    """Raised when a schedule is created under a name another schedule has."""
