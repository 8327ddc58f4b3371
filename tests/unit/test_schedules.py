"""Cron arithmetic of schedules: ticks in time zones, DST transitions, catch-up policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from conveyor.schedules import Schedule, ScheduleError, schedule, tick_key, window_of

GRACE = timedelta(seconds=2)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_a_quarter_hourly_schedule_in_paris_ticks_on_paris_quarter_hours() -> None:
    check = schedule("check", cron="*/15 * * * *", workflow="w", timezone="Europe/Paris")

    ticks = list(islice(check.ticks(utc(2026, 7, 1, 9, 50)), 3))

    assert ticks == [utc(2026, 7, 1, 10, 0), utc(2026, 7, 1, 10, 15), utc(2026, 7, 1, 10, 30)]


def test_a_daily_tick_in_the_spring_forward_gap_fires_once_at_the_hour_after() -> None:
    nightly = schedule("nightly", cron="30 2 * * *", workflow="w", timezone="Europe/Paris")

    ticks = list(islice(nightly.ticks(utc(2026, 3, 28, 12, 0)), 2))

    # 02:30 does not exist in Paris on 29 March 2026: 03:00 CEST is 01:00 UTC.
    assert ticks == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]


def test_a_half_hourly_schedule_fires_in_both_offsets_of_the_fall_back_hour() -> None:
    half = schedule("half", cron="*/30 * * * *", workflow="w", timezone="Europe/Paris")

    ticks = list(islice(half.ticks(utc(2026, 10, 24, 23, 50)), 5))

    # 02:00 and 02:30 happen twice on 25 October 2026: CEST (UTC+2), then CET (UTC+1).
    assert ticks == [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 0),
                     utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 0)]
    assert len(set(ticks)) == 5


def test_a_sixth_field_ticks_every_second() -> None:
    every = schedule("every", cron="* * * * * *", workflow="w")

    assert list(islice(every.ticks(utc(2026, 1, 1, 0, 0, 0)), 2)) == [
        utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 0, 0, 2)]


def test_a_tick_on_time_fires_once_and_then_nothing_until_the_next() -> None:
    minutely = schedule("m", cron="* * * * *", workflow="w", catch_up="skip")

    assert minutely.due(utc(2026, 1, 1, 9, 0), utc(2026, 1, 1, 9, 1, 1), GRACE) == [
        utc(2026, 1, 1, 9, 1)]
    assert minutely.due(utc(2026, 1, 1, 9, 1), utc(2026, 1, 1, 9, 1, 59), GRACE) == []


def test_a_clock_stepped_back_fires_nothing_already_fired() -> None:
    minutely = schedule("m", cron="* * * * *", workflow="w", catch_up="all")

    assert minutely.due(utc(2026, 1, 1, 9, 5), utc(2026, 1, 1, 9, 2, 0, 500), GRACE) == []


@pytest.mark.parametrize(("catch_up", "window", "fired_minutes"), [
    ("skip", None, []),
    ("latest", None, [10]),
    ("all", None, list(range(1, 11))),
    ("all", timedelta(minutes=3, seconds=30), [7, 8, 9, 10]),
])
def test_ticks_missed_while_down_fire_as_the_catch_up_policy_says(
    catch_up: str, window: timedelta | None, fired_minutes: list[int]
) -> None:
    minutely = schedule("m", cron="* * * * *", workflow="w", catch_up=catch_up, window=window)

    due = minutely.due(utc(2026, 1, 1, 9, 0), utc(2026, 1, 1, 9, 10, 30), GRACE)

    assert due == [utc(2026, 1, 1, 9, minute) for minute in fired_minutes]


def test_the_key_of_a_tick_names_the_schedule_and_the_tick_in_utc() -> None:
    two_pm_in_paris = datetime(2026, 7, 1, 14, 0, tzinfo=ZoneInfo("Europe/Paris"))

    assert tick_key("check", two_pm_in_paris) == "schedule:check@2026-07-01T12:00:00+00:00"


def test_a_decorated_function_builds_each_ticks_input() -> None:
    @schedule("daily", cron="0 6 * * *", workflow="w")
    def daily(tick: datetime) -> dict[str, str]:
        return {"day": tick.date().isoformat()}

    assert isinstance(daily, Schedule)
    assert daily.input_for(utc(2026, 5, 4, 6)) == {"day": "2026-05-04"}


@pytest.mark.parametrize(("options", "complaint"), [
    ({"cron": "61 * * * *"}, "not a cron expression"),
    ({"timezone": "Mars/Olympus"}, "not a time zone"),
    ({"catch_up": "sometimes"}, "catch_up must be one of skip, latest, all"),
    ({"overlap": "queue"}, "overlap must be one of skip, allow, cancel"),
    ({"window": timedelta(0), "catch_up": "all"}, "window must be positive"),
    ({"window": timedelta(hours=1), "catch_up": "latest"}, "a window bounds catch_up='all' only"),
])
def test_an_invalid_schedule_is_refused_naming_the_field(
    options: dict[str, object], complaint: str
) -> None:
    fields: dict[str, object] = {"cron": "* * * * *", "workflow": "w", **options}

    with pytest.raises(ScheduleError, match=complaint):
        schedule("bad", **fields)  # type: ignore[arg-type]



@pytest.mark.parametrize("seconds", [0, -1, 1e300, True, "60"])
def test_a_submitted_window_outside_a_year_or_not_a_number_is_refused(seconds: object) -> None:
    with pytest.raises(ScheduleError, match="window_seconds must be a number"):
        window_of(seconds)


def test_a_submitted_window_is_taken_in_seconds() -> None:
    assert window_of(90) == timedelta(seconds=90)
    assert window_of(None) is None
