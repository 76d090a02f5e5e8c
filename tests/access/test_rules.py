"""The access policy: precedence of the reasons, compatibility without rules, passback modes,
and the wire form a door's cache holds."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from appliance.access.rules import (ANTI_PASSBACK, ENTRY, EXIT, EXPIRED, GRANTED, NOT_IN_GROUP, NOT_YET_VALID,
                                    OUTSIDE_SCHEDULE, AccessPolicy, AreaRule, DoorRules, Subject, Validity)
from appliance.access.schedule import Holidays, WeeklySchedule

OFFICE = WeeklySchedule.from_mapping({d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")})
MONDAY_10 = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai
MONDAY_20 = MONDAY_10 + timedelta(hours=10)


def rules(door: str = "front", area: AreaRule | None = None) -> DoorRules:
    return DoorRules(door, True, "Asia/Shanghai", {"staff": OFFICE, "night": WeeklySchedule.always()}, Holidays(),
                     area)


def test_without_rules_everyone_passes_every_door():
    policy = AccessPolicy({})
    assert policy.decide(Subject("s1"), "front", MONDAY_10).granted
    assert AccessPolicy({"front": DoorRules("front")}).decide(Subject("s1"), "front", MONDAY_20).reason == GRANTED


def test_reasons_in_precedence_order():
    policy = AccessPolicy({"front": rules()})
    staff = Subject("s1", frozenset({"staff"}))
    assert policy.decide(staff, "front", MONDAY_10).reason == GRANTED
    assert policy.decide(staff, "front", MONDAY_20).reason == OUTSIDE_SCHEDULE
    assert policy.decide(Subject("s2", frozenset({"visitors"})), "front", MONDAY_10).reason == NOT_IN_GROUP
    assert policy.decide(Subject("s3"), "front", MONDAY_10).reason == NOT_IN_GROUP  # in no group: no door
    assert policy.decide(staff, "back", MONDAY_10).reason == GRANTED  # back has no rules: not enforced there
    both = Subject("s4", frozenset({"staff", "night"}))
    assert policy.decide(both, "front", MONDAY_20).granted  # any granting group's schedule will do
    start, end = MONDAY_10.timestamp() + 60, MONDAY_10.timestamp() + 3600
    visitor = Subject("v", frozenset({"staff"}), Validity(start, end))
    assert policy.decide(visitor, "front", MONDAY_10).reason == NOT_YET_VALID
    assert policy.decide(visitor, "front", MONDAY_10 + timedelta(minutes=5)).granted
    assert policy.decide(visitor, "front", MONDAY_10 + timedelta(hours=1)).reason == EXPIRED
    # validity before group: an expired outsider is told "expired"
    assert policy.decide(Subject("x", frozenset(), Validity(None, 1.0)), "front", MONDAY_10).reason == EXPIRED


def test_hard_passback_refuses_a_second_entry_until_an_exit():
    policy = AccessPolicy({"in": rules("in", AreaRule("hall", ENTRY, "hard", 3600)),
                           "out": rules("out", AreaRule("hall", EXIT, "hard", 3600))})
    staff = Subject("s1", frozenset({"staff"}))
    assert policy.decide(staff, "in", MONDAY_10).granted
    second = policy.decide(staff, "in", MONDAY_10 + timedelta(minutes=1))
    assert not second.granted and second.reason == ANTI_PASSBACK
    assert policy.decide(staff, "out", MONDAY_10 + timedelta(minutes=2)).granted
    assert policy.decide(staff, "in", MONDAY_10 + timedelta(minutes=3)).granted
    # the timed reset forgets a missed exit
    assert policy.decide(staff, "in", MONDAY_10 + timedelta(minutes=3, seconds=3600)).granted


def test_soft_passback_grants_and_flags_the_violation():
    policy = AccessPolicy({"in": rules("in", AreaRule("hall", ENTRY, "soft", 0))})
    staff = Subject("s1", frozenset({"staff"}))
    first = policy.decide(staff, "in", MONDAY_10)
    second = policy.decide(staff, "in", MONDAY_10 + timedelta(minutes=1))
    assert first.granted and not first.passback_violation
    assert second.granted and second.passback_violation


def test_the_same_pass_asked_again_is_no_violation_in_either_mode():
    for mode in ("hard", "soft"):
        policy = AccessPolicy({"in": rules("in", AreaRule("hall", ENTRY, mode, 0))})
        staff = Subject("s1", frozenset({"staff"}))
        assert policy.decide(staff, "in", MONDAY_10, "req-1").granted
        retried = policy.decide(staff, "in", MONDAY_10 + timedelta(seconds=3), "req-1")  # the answer was lost
        assert retried.granted and not retried.passback_violation
        another = policy.decide(staff, "in", MONDAY_10 + timedelta(seconds=6), "req-2")
        assert another.passback_violation if mode == "soft" else another.reason == ANTI_PASSBACK


def test_refused_passes_do_not_count_as_entries():
    policy = AccessPolicy({"in": rules("in", AreaRule("hall", ENTRY, "hard", 0))})
    staff = Subject("s1", frozenset({"staff"}))
    assert policy.decide(staff, "in", MONDAY_20).reason == OUTSIDE_SCHEDULE
    assert policy.decide(staff, "in", MONDAY_10).granted


def test_wire_round_trip_and_validity():
    door = DoorRules("in", True, "Asia/Shanghai", {"staff": OFFICE}, Holidays.parse({"2026-10-01": "National Day"}),
                     AreaRule("hall", ENTRY, "soft", 60.0))
    back = DoorRules.from_wire("in", door.to_wire())
    assert back.enforced and back.tz == "Asia/Shanghai" and back.grants == door.grants and back.area == door.area
    assert back.holidays.dates == door.holidays.dates
    assert DoorRules("x").to_wire() == {} and not DoorRules.from_wire("x", {}).enforced
    assert Validity.from_wire(Validity(1.0, None).to_wire()) == Validity(1.0, None)
