"""Who may open a door now: the access policy of one or more doors.

A person is let through a door when (in this order, the first failure is the reason):
their validity period has begun (``not_yet_valid``) and not ended (``expired``), one of their
access groups grants the door (``not_in_group``), that grant's weekly schedule is open now in
the site's time zone (``outside_schedule``), and the door's area does not refuse a second
entry (``anti_passback``, hard mode only). A site with no access group at all is not enforced:
everyone enrolled opens every door (``DoorRules.enforced`` is False), as before groups existed.

The same rules travel to the door's cache (``to_wire``/``from_wire``) so the door decides
offline exactly as the matcher does (docs/access.md).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from appliance.access.passback import PassbackTracker
from appliance.access.schedule import Holidays, Schedule, WeeklySchedule, zone

GRANTED = "granted"
NOT_IN_GROUP = "not_in_group"
OUTSIDE_SCHEDULE = "outside_schedule"
NOT_YET_VALID = "not_yet_valid"
EXPIRED = "expired"
ANTI_PASSBACK = "anti_passback"
REFUSALS = (NOT_IN_GROUP, OUTSIDE_SCHEDULE, NOT_YET_VALID, EXPIRED, ANTI_PASSBACK)
ENTRY, EXIT = "entry", "exit"
HARD, SOFT, OFF = "hard", "soft", "off"
PASSBACK_MODES = (HARD, SOFT, OFF)


@dataclass(frozen=True)
class Validity:
    """When a person's access starts and ends (Unix seconds; None: open-ended). Visitors
    get both; staff usually neither."""

    valid_from: float | None = None
    valid_until: float | None = None

    def problem(self, at: float) -> str:
        if self.valid_from is not None and at < self.valid_from:
            return NOT_YET_VALID
        if self.valid_until is not None and at >= self.valid_until:
            return EXPIRED
        return ""

    def to_wire(self) -> dict[str, float]:
        return {k: v for k, v in (("f", self.valid_from), ("u", self.valid_until)) if v is not None}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Validity:
        return cls(wire.get("f"), wire.get("u"))


@dataclass(frozen=True)
class Subject:
    """What the policy needs of a person: their pseudonym, access groups and validity."""

    subject_id: str
    groups: frozenset[str] = frozenset()
    validity: Validity = Validity()


@dataclass(frozen=True)
class AreaRule:
    """The door is the ``direction`` (entry/exit) of ``area``, whose passback ``mode`` is
    hard, soft or off; a person's presence is forgotten after ``reset_s`` (0: never)."""

    area: str
    direction: str = ENTRY
    mode: str = OFF
    reset_s: float = 0.0


@dataclass(frozen=True)
class DoorRules:
    """Everything needed to decide at one door: the grants (group -> schedule) of the groups
    that open it, the site's zone and holidays, its area. ``enforced`` False: no rules exist."""

    door: str
    enforced: bool = False
    tz: str = "UTC"
    grants: Mapping[str, WeeklySchedule] = field(default_factory=dict)
    holidays: Holidays = Holidays()
    area: AreaRule | None = None

    def __post_init__(self) -> None:
        zone(self.tz)

    def schedule(self, group: str) -> Schedule | None:
        weekly = self.grants.get(group)
        return None if weekly is None else Schedule(weekly, self.tz, self.holidays)

    def to_wire(self) -> dict[str, Any]:
        if not self.enforced:
            return {}
        wire: dict[str, Any] = {"door": self.door, "tz": self.tz,
                                "grants": {g: s.to_mapping() for g, s in sorted(self.grants.items())},
                                "holidays": {d.isoformat(): n for d, n in sorted(self.holidays.dates.items())}}
        if self.area is not None:
            wire["area"] = {"name": self.area.area, "direction": self.area.direction, "mode": self.area.mode,
                            "reset_s": self.area.reset_s}
        return wire

    @classmethod
    def from_wire(cls, door: str, wire: Mapping[str, Any]) -> DoorRules:
        """An empty mapping is a site without rules (not enforced)."""
        if not wire:
            return cls(door)
        area = wire.get("area")
        return cls(door, True, str(wire["tz"]),
                   {g: WeeklySchedule.from_mapping(s) for g, s in dict(wire["grants"]).items()},
                   Holidays.parse(dict(wire.get("holidays", {}))),
                   AreaRule(area["name"], area["direction"], area["mode"], float(area["reset_s"])) if area else None)


@dataclass(frozen=True)
class AccessVerdict:
    granted: bool
    reason: str  # GRANTED or one of REFUSALS
    passback_violation: bool = False  # soft passback: granted, but a second entry without exit


class AccessPolicy:
    """Decides for the doors it knows (one at a device, every door at the matcher). Passback
    state is the ``tracker``'s; ``decide`` records a granted pass in it."""

    def __init__(self, doors: Mapping[str, DoorRules], tracker: PassbackTracker | None = None):
        self.doors = dict(doors)
        self.tracker = tracker or PassbackTracker()

    def decide(self, subject: Subject, door: str, at: datetime, pass_id: str = "") -> AccessVerdict:
        """``at`` must be aware; its zone does not matter (converted to the site's). ``pass_id``:
        the request's id, so that the same pass asked again is not its own second entry."""
        rules = self.doors.get(door) or DoorRules(door)
        if not rules.enforced:
            return AccessVerdict(True, GRANTED)
        problem = subject.validity.problem(at.timestamp())
        if problem:
            return AccessVerdict(False, problem)
        granting = [g for g in sorted(subject.groups) if g in rules.grants]
        if not granting:
            return AccessVerdict(False, NOT_IN_GROUP)
        if not any(rules.schedule(g).allows(at) for g in granting):  # type: ignore[union-attr]
            return AccessVerdict(False, OUTSIDE_SCHEDULE)
        area = rules.area
        if area is None or area.mode == OFF:
            return AccessVerdict(True, GRANTED)
        now = at.timestamp()
        violation = self.tracker.pass_through(area.area, subject.subject_id, area.direction == ENTRY, now,
                                              area.reset_s, pass_id, refuse_second_entry=area.mode == HARD)
        if violation and area.mode == HARD:
            return AccessVerdict(False, ANTI_PASSBACK)
        return AccessVerdict(True, GRANTED, passback_violation=violation)
