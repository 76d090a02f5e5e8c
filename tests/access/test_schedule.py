"""Weekly schedules in the site's zone: windows, midnight edges, holidays, DST."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from appliance.access.schedule import Holidays, Schedule, Window, WeeklySchedule, site_now, zone
from appliance.errors import ApplianceError

SHANGHAI = zone("Asia/Shanghai")
BERLIN = zone("Europe/Berlin")


def shanghai(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def test_a_window_ending_at_24_00_covers_the_last_second_and_not_midnight():
    # Monday 2026-12-07 in Shanghai: 22:00-24:00; Tuesday closed
    rule = Schedule(WeeklySchedule.from_mapping({"mon": ["22:00-24:00"]}), "Asia/Shanghai")
    assert rule.allows(shanghai(2026, 12, 7, 22, 0, 0))
    assert rule.allows(shanghai(2026, 12, 7, 23, 59, 59))
    assert not rule.allows(shanghai(2026, 12, 8, 0, 0, 0))
    assert not rule.allows(shanghai(2026, 12, 7, 21, 59, 59))


def test_a_window_crossing_midnight_runs_on_into_the_next_day():
    rule = Schedule(WeeklySchedule.from_mapping({"mon": ["22:00-06:00"]}), "Asia/Shanghai")
    assert rule.allows(shanghai(2026, 12, 7, 23, 59, 59))
    assert rule.allows(shanghai(2026, 12, 8, 0, 0, 0))  # Tuesday 00:00 belongs to Monday's window
    assert rule.allows(shanghai(2026, 12, 8, 5, 59, 59))
    assert not rule.allows(shanghai(2026, 12, 8, 6, 0, 0))
    assert not rule.allows(shanghai(2026, 12, 7, 5, 0, 0))  # Monday morning: Sunday had no window
    assert not rule.allows(shanghai(2026, 12, 8, 23, 0, 0))  # Tuesday night: no window of its own


def test_a_window_starting_at_midnight_is_that_day_only():
    rule = Schedule(WeeklySchedule.from_mapping({"tue": ["00:00-06:00"]}), "Asia/Shanghai")
    assert rule.allows(shanghai(2026, 12, 8, 0, 0, 0))
    assert not rule.allows(shanghai(2026, 12, 7, 23, 59, 59))


def test_the_instant_is_read_in_the_site_zone_not_utc():
    rule = Schedule(WeeklySchedule.from_mapping({"mon": ["08:00-09:00"]}), "Asia/Shanghai")
    # 00:30 UTC on Monday is 08:30 in Shanghai
    assert rule.allows(datetime(2026, 12, 7, 0, 30, tzinfo=timezone.utc))
    assert not rule.allows(datetime(2026, 12, 7, 8, 30, tzinfo=timezone.utc))
    with pytest.raises(ApplianceError):
        rule.allows(datetime(2026, 12, 7, 8, 30))  # naive: which zone? refused


def test_daylight_saving_in_berlin_keeps_wall_clock_windows():
    rule = Schedule(WeeklySchedule.from_mapping({"sun": ["01:00-04:00"], "sat": ["08:00-18:00"]}), "Europe/Berlin")
    # 2026-03-29: clocks go 02:00 -> 03:00 CET -> CEST. 00:30 UTC = 01:30 CET (open);
    # 01:30 UTC = 03:30 CEST (open); 02:00 UTC = 04:00 CEST (closed)
    assert rule.allows(datetime(2026, 3, 29, 0, 30, tzinfo=timezone.utc))
    assert rule.allows(datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc))
    assert not rule.allows(datetime(2026, 3, 29, 2, 0, tzinfo=timezone.utc))
    # Saturday 08:00 local is 07:00 UTC in winter and 06:00 UTC in summer
    assert rule.allows(datetime(2026, 1, 10, 7, 0, tzinfo=timezone.utc))
    assert not rule.allows(datetime(2026, 1, 10, 6, 59, tzinfo=timezone.utc))
    assert rule.allows(datetime(2026, 7, 11, 6, 0, tzinfo=timezone.utc))
    # the autumn fall-back hour happens twice; both are inside 01:00-04:00 on 2026-10-25
    first = datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)  # 02:30 CEST
    assert rule.allows(first) and rule.allows(first + timedelta(hours=1))  # 02:30 CET


def test_holidays_close_or_use_their_own_windows():
    weekdays = {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
    holidays = Holidays.parse({"2026-10-01": "National Day"})
    closed = Schedule(WeeklySchedule.from_mapping({**weekdays, "holidays": "closed"}), "Asia/Shanghai", holidays)
    special = Schedule(WeeklySchedule.from_mapping({**weekdays, "holidays": "schedule", "holiday": ["10:00-12:00"]}),
                       "Asia/Shanghai", holidays)
    usual = Schedule(WeeklySchedule.from_mapping({**weekdays, "holidays": "ignore"}), "Asia/Shanghai", holidays)
    at_nine = shanghai(2026, 10, 1, 9, 0)  # a Thursday
    assert not closed.allows(at_nine) and not special.allows(at_nine) and usual.allows(at_nine)
    assert special.allows(shanghai(2026, 10, 1, 11, 0)) and closed.allows(shanghai(2026, 10, 2, 9, 0))


def test_a_holiday_closes_the_spill_over_of_the_night_before():
    night = WeeklySchedule.from_mapping({"wed": ["22:00-06:00"], "holidays": "closed"})
    rule = Schedule(night, "Asia/Shanghai", Holidays.parse(["2026-09-30"]))  # a Wednesday
    assert not rule.allows(shanghai(2026, 10, 1, 1, 0))


@pytest.mark.parametrize("spec", [{"mon": ["8-18"]}, {"mon": ["08:00-24:30"]}, {"mon": ["24:00-06:00"]},
                                  {"mon": ["08:00-08:00"]}, {"funday": ["08:00-09:00"]}, {"holidays": "maybe"},
                                  {"holidays": "schedule"}, {"mon": ["08:60-09:00"]}])
def test_bad_schedules_are_clear_errors(spec):
    with pytest.raises(ApplianceError):
        WeeklySchedule.from_mapping(spec)


def test_round_trip_always_and_site_now():
    spec = {"mon": ["08:00-12:00", "13:00-18:00"], "fri": ["22:00-06:00"], "holidays": "closed"}
    weekly = WeeklySchedule.from_mapping(spec)
    assert WeeklySchedule.from_mapping(weekly.to_mapping()) == weekly
    assert str(Window.parse("22:00-24:00")) == "22:00-24:00"
    assert Schedule(WeeklySchedule.always(), "Asia/Shanghai", Holidays.parse(["2026-10-01"])).allows(
        shanghai(2026, 10, 1, 3, 0))
    now = site_now("Asia/Shanghai")
    assert now.utcoffset() == timedelta(hours=8)
    with pytest.raises(ApplianceError):
        site_now("Mars/Olympus_Mons")
