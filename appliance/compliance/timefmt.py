"""Times as the report prints them: UTC, to the minute, one format everywhere."""
from __future__ import annotations

import datetime as dt

SECONDS_PER_DAY = 86400.0


def utc(timestamp: float | None) -> str:
    """``2026-12-02 00:40 UTC`` (or ``never`` for no time)."""
    if not timestamp:
        return "never"
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def days(seconds: float) -> str:
    """An age in days, one decimal (``12.5 days``)."""
    return f"{max(0.0, seconds) / SECONDS_PER_DAY:.1f} days"
