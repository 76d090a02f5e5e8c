"""Weekly schedules and holidays evaluated in the site's time zone.

A schedule is a set of time windows per weekday, written as "HH:MM-HH:MM" in the site's local
wall-clock time. "24:00" ends a window at midnight; a window whose end is not after its start
("22:00-06:00") crosses midnight and continues on the next day. Holidays are dates treated as
closed or as a named holiday schedule (``Schedule.holidays``). Evaluation converts the instant
to the site's zone with ``zoneinfo``, so DST changes are handled by the tz database.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.errors import ApplianceError, ErrorCode

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
HOLIDAY_CLOSED = "closed"
HOLIDAY_AS_USUAL = "ignore"  # holidays do not change this schedule
HOLIDAY_KEY = "holidays"  # the mapping key naming the holiday rule
HOLIDAY_WINDOWS_KEY = "holiday"  # the mapping key of the windows used on a holiday


def _invalid(message: str) -> ApplianceError:
    return ApplianceError(ErrorCode.CONFIG_INVALID, message)


def zone(tz: str) -> ZoneInfo:
    """The IANA zone ``tz`` or a clear error (never a silent UTC fallback)."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _invalid(f"unknown time zone {tz!r}: use an IANA name such as 'Asia/Shanghai'") from exc


def site_now(tz: str) -> datetime:
    """The current instant as an aware datetime in the site's zone ``tz``."""
    return datetime.now(timezone.utc).astimezone(zone(tz))


def _minutes(text: str, allow_24: bool) -> int:
    hours, sep, mins = text.strip().partition(":")
    if not sep or not hours.isdigit() or not mins.isdigit() or len(mins) != 2:
        raise _invalid(f"time {text!r} is not HH:MM")
    value = int(hours) * 60 + int(mins)
    if int(mins) >= 60 or value > MINUTES_PER_DAY or (value == MINUTES_PER_DAY and not allow_24):
        raise _invalid(f"time {text!r} is out of range (00:00-24:00)")
    return value


@dataclass(frozen=True, order=True)
class Window:
    """One window in minutes after local midnight; ``end <= start`` crosses midnight."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Window:
        begin, sep, finish = text.partition("-")
        if not sep:
            raise _invalid(f"window {text!r} is not HH:MM-HH:MM")
        start, end = _minutes(begin, allow_24=False), _minutes(finish, allow_24=True)
        if start == end:
            raise _invalid(f"window {text!r} is empty: start equals end")
        return cls(start, end)

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def covers_today(self, minute: int) -> bool:
        """The part of the window on its own day covers ``minute`` (end exclusive)."""
        return self.start <= minute < (MINUTES_PER_DAY if self.crosses_midnight else self.end)

    def covers_next_day(self, minute: int) -> bool:
        """The spill-over after midnight of a window that crosses it covers ``minute``."""
        return self.crosses_midnight and minute < self.end

    def __str__(self) -> str:
        def fmt(value: int) -> str:
            return f"{value // 60:02d}:{value % 60:02d}"
        return f"{fmt(self.start)}-{fmt(self.end)}"


def _windows(value: Iterable[str] | str) -> tuple[Window, ...]:
    items = [value] if isinstance(value, str) else list(value)
    return tuple(sorted(Window.parse(item) for item in items))


@dataclass(frozen=True)
class Holidays:
    """Named dates of the site (local calendar dates, no time zone needed)."""

    dates: Mapping[date, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, entries: Mapping[str, str] | Iterable[str]) -> Holidays:
        pairs = entries.items() if isinstance(entries, Mapping) else ((item, "") for item in entries)
        out: dict[date, str] = {}
        for text, name in pairs:
            try:
                out[date.fromisoformat(str(text))] = str(name)
            except ValueError as exc:
                raise _invalid(f"holiday {text!r} is not a date YYYY-MM-DD") from exc
        return cls(out)

    def __contains__(self, day: object) -> bool:
        return day in self.dates

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.dates.items())))


@dataclass(frozen=True)
class WeeklySchedule:
    """Windows per weekday plus the holiday rule: ``"closed"`` (no access on a holiday),
    ``"ignore"`` (a holiday is an ordinary day) or ``"schedule"`` (``holiday`` windows apply)."""

    days: tuple[tuple[Window, ...], ...] = ((),) * 7  # Monday first
    holiday_rule: str = HOLIDAY_CLOSED
    holiday_windows: tuple[Window, ...] = ()

    @classmethod
    def always(cls) -> WeeklySchedule:
        """Every minute of every day, holidays included (the compatible default)."""
        full = (Window(0, MINUTES_PER_DAY),)
        return cls((full,) * 7, HOLIDAY_AS_USUAL)

    @classmethod
    def from_mapping(cls, spec: Mapping[str, object]) -> WeeklySchedule:
        """``{"mon": ["08:00-18:00"], ..., "holidays": "closed"}``; unknown keys are errors."""
        unknown = set(spec) - set(WEEKDAYS) - {HOLIDAY_KEY, HOLIDAY_WINDOWS_KEY}
        if unknown:
            raise _invalid(f"unknown schedule keys {sorted(unknown)}; use {list(WEEKDAYS)}, "
                           f"{HOLIDAY_KEY!r}, {HOLIDAY_WINDOWS_KEY!r}")
        days = tuple(_windows(spec.get(day, ())) for day in WEEKDAYS)  # type: ignore[arg-type]
        rule = str(spec.get(HOLIDAY_KEY, HOLIDAY_CLOSED))
        holiday = _windows(spec.get(HOLIDAY_WINDOWS_KEY, ()))  # type: ignore[arg-type]
        if rule not in (HOLIDAY_CLOSED, HOLIDAY_AS_USUAL, "schedule"):
            raise _invalid(f"holidays rule {rule!r}: use 'closed', 'ignore' or 'schedule'")
        if rule == "schedule" and not holiday:
            raise _invalid("holidays = 'schedule' needs 'holiday' windows")
        return cls(days, rule, holiday)

    def to_mapping(self) -> dict[str, object]:
        out: dict[str, object] = {day: [str(w) for w in windows] for day, windows in zip(WEEKDAYS, self.days)}
        out[HOLIDAY_KEY] = self.holiday_rule
        if self.holiday_windows:
            out[HOLIDAY_WINDOWS_KEY] = [str(w) for w in self.holiday_windows]
        return out

    def _windows_on(self, day: date, holidays: Holidays) -> tuple[Window, ...] | None:
        """The windows of local date ``day``; None when a holiday closes it."""
        if day in holidays and self.holiday_rule != HOLIDAY_AS_USUAL:
            return self.holiday_windows if self.holiday_rule == "schedule" else None
        return self.days[day.weekday()]

    def allows_local(self, local: datetime, holidays: Holidays = Holidays()) -> bool:
        """``local`` is a wall-clock time in the site's zone (aware or naive)."""
        minute = local.hour * 60 + local.minute
        today = self._windows_on(local.date(), holidays)
        if today and any(w.covers_today(minute) for w in today):
            return True
        # a window that crossed midnight yesterday still runs, if yesterday was open
        yesterday = self._windows_on(local.date() - timedelta(days=1), holidays)
        return bool(yesterday) and any(w.covers_next_day(minute) for w in yesterday)  # type: ignore[union-attr]


@dataclass(frozen=True)
class Schedule:
    """A weekly schedule bound to the site's time zone and holiday calendar."""

    weekly: WeeklySchedule
    tz: str = "UTC"
    holidays: Holidays = Holidays()

    def __post_init__(self) -> None:
        zone(self.tz)  # fail on construction, not at the door

    def allows(self, at: datetime) -> bool:
        """``at`` must be aware (any zone); it is converted to the site's local time."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise _invalid("schedule check needs an aware datetime (with a time zone)")
        return self.weekly.allows_local(at.astimezone(zone(self.tz)), self.holidays)
