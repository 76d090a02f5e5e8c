"""The access table (``[access]``): the site's time zone, in which every access schedule and
holiday is read, and the anti-passback defaults of a new area (docs/access.md). Composed into
``Config`` by ``tables``; the rules themselves (groups, doors, schedules) live in the sync
store and are edited with ``appliance access``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field

from appliance.config.fields import Float, Str, Table

PASSBACK_MODES = ("hard", "soft", "off")
MAX_PASSBACK_RESET_S = 7 * 24 * 3600.0  # a week: presence older than this is never worth keeping


def iana_zone(name: str) -> str:
    """A time zone the tz database knows (never a silent fallback to UTC)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'Asia/Shanghai'") from None
    return name


@dataclass(frozen=True)
class AccessConfig(Table):
    """Where access schedules are read: the site's zone; passback defaults for new areas."""

    timezone: Annotated[Str, AfterValidator(iana_zone), Field(description=(
        "the site's IANA time zone (e.g. 'Asia/Shanghai', 'Europe/Berlin'): weekly schedules and holidays are "
        "local wall-clock times there, daylight saving included; every matcher replica must use the same"))] = "UTC"
    passback_mode: Annotated[Literal[PASSBACK_MODES], Field(description=(
        "anti-passback of a new area: 'hard' refuses a second entry without an exit, 'soft' lets it through "
        "and records a violation, 'off' does not track"))] = "hard"
    passback_reset_s: Annotated[Float, Field(ge=0, le=MAX_PASSBACK_RESET_S, description=(
        "a new area forgets who is inside this long after their last pass (a missed exit does not lock "
        "anyone out for ever), seconds; 0: never"))] = 12 * 3600.0
