"""Access administration over the real central and sync stores: each change audited, the
people it concerns restamped (a new revision, same template), the rules alone a bare revision;
the revision stream then sends each door only the people its groups open it for, with their
access, and the door's rules."""
from __future__ import annotations

import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.access_admin import AccessAdmin, rules_view
from appliance.matcher.access_site import SiteAccess
from appliance.matcher.eligibility import Profiles
from appliance.matcher.revisions import SyncEngine
from appliance.protocol import messages
from appliance.security.roles import Principal, Role
from matcherkit import ADMIN, OPERATOR, refusing

SYNC = Principal("matcher-1", Role.OPERATOR)


def engine_of(node, tz: str = "Asia/Shanghai", snapshot_after: int = 5000) -> SyncEngine:
    profiles = Profiles(node.data.identity, node.store.groups, SYNC, SiteAccess(node.store, tz))
    return SyncEngine(node.data, profiles, node.pack, node.dimension, snapshot_after, SYNC)


def held(engine: SyncEngine, door: str) -> tuple[set[str], dict, dict]:
    """(subjects, their access, the rules) a door starting from scratch receives."""
    request = messages.SyncRequest(messages.new_id(), door, 0)
    deltas, _ = engine.answer(request, "default")
    subjects = {u["s"] for d in deltas for u in d.upserts}
    people = {k: v for d in deltas for k, v in d.access.get("people", {}).items()}
    return subjects, people, deltas[-1].access.get("rules", {})


def test_changes_restamp_the_people_concerned_and_doors_follow(node):
    alice, _ = node.enroll("Alice Wong")
    bob, _ = node.enroll("Bob Lee")
    engine = engine_of(node)
    assert held(engine, "door-a")[0] == {alice, bob}  # no group yet: everyone everywhere
    assert held(engine, "door-a")[2] == {}
    admin = AccessAdmin(node.data, node.store, ADMIN)
    start = node.data.biometric.revision
    admin.put_group("staff", {"mon": ["08:00-18:00"], "holidays": "closed"})
    # the first group restricts everyone: both restamped
    assert sorted(r.revision for r in node.data.biometric.rows()) == [start + 1, start + 2]
    assert held(engine, "door-a")[0] == set()  # a person in no group opens no door
    admin.grant_doors("staff", ["door-a"])
    admin.set_member("staff", alice)
    subjects, people, rules = held(engine, "door-a")
    assert subjects == {alice} and people == {alice: {"g": ["staff"]}}
    assert rules["tz"] == "Asia/Shanghai" and rules["grants"]["staff"]["mon"] == ["08:00-18:00"]
    assert held(engine, "door-b")[0] == set()
    snapshot = held(engine_of(node, snapshot_after=0), "door-a")  # a snapshot carries the same
    assert snapshot[:2] == (subjects, people) and snapshot[2] == rules
    before = node.data.biometric.revision
    admin.set_holiday("2026-10-01", "National Day")
    assert node.data.biometric.revision == before + 1  # the rules alone: a bare revision
    assert held(engine, "door-a")[2]["holidays"] == {"2026-10-01": "National Day"}
    admin.set_validity(alice, None, 1.0)  # expired long ago: no door may hold her
    assert held(engine, "door-a")[0] == set()
    admin.set_validity(alice, None, None)
    admin.set_member("staff", alice, member=False)
    changes = engine.changes(messages.new_id(), before, "default", node.data.biometric.revision, "door-a")
    assert alice in {t["s"] for d in changes for t in d.tombstones}  # the door drops her
    actions = [e.action for e in node.data.audit.entries()]
    for action in ("access.group.create", "access.doors.grant", "access.member.add", "access.holiday.add",
                   "access.validity.set", "access.member.remove"):
        assert action in actions
    view = rules_view(node.store, "Asia/Shanghai")
    assert view["enforced"] and view["groups"][0]["doors"] == ["door-a"] and view["groups"][0]["members"] == 0
    assert admin.delete_group("staff") == [] and not node.store.access_enforced()
    assert held(engine, "door-b")[0] == {alice, bob}  # back to everyone everywhere


def test_the_first_and_the_last_group_restamp_people_without_a_template_too(node):
    """Rules starting or ending change every door's cache at once: the people who refused face
    recognition (a card, no template) are restamped with the template holders, so a door drops
    them when they open no door and takes them back when the rules go (before, they stayed as
    they were until their next card change: refused offline where the site let everyone in)."""
    alice, _ = node.enroll("Alice Wong")
    carla = refusing(node, "Carla Card", "R-77", "864209")
    engine = engine_of(node)
    assert held(engine, "door-a")[0] == {alice, carla}
    admin = AccessAdmin(node.data, node.store, ADMIN)
    before = node.data.biometric.revision
    admin.put_group("staff", {"mon": ["08:00-18:00"]})  # the first group: nobody is in one
    assert node.data.identity.credential_revision(carla) > before
    changes = engine.changes(messages.new_id(), before, "default", node.data.biometric.revision, "door-a")
    assert {t["s"] for d in changes for t in d.tombstones} == {alice, carla}
    before = node.data.biometric.revision
    assert admin.delete_group("staff") == []  # the last group: everyone everywhere again
    changes = engine.changes(messages.new_id(), before, "default", node.data.biometric.revision, "door-a")
    assert {u["s"] for d in changes for u in d.upserts} == {alice, carla}


def test_only_administrators_change_rules_and_bad_input_is_refused(node):
    alice, _ = node.enroll("Alice Wong")
    with pytest.raises(ApplianceError) as denied:
        AccessAdmin(node.data, node.store, OPERATOR)
    assert denied.value.code is ErrorCode.PERMISSION_DENIED
    admin = AccessAdmin(node.data, node.store, ADMIN)
    head = node.data.biometric.revision
    for bad in (lambda: admin.put_group("a b"), lambda: admin.put_group("g", {"mon": ["18:00-18:00"]}),
                lambda: admin.grant_doors("nosuch", ["door-a"]), lambda: admin.set_holiday("01/10/2026"),
                lambda: admin.set_validity(alice, 10.0, 5.0), lambda: admin.set_member("g", alice),
                lambda: admin.set_area("hall", "medium", 0, [], []),
                lambda: admin.set_area("hall", "hard", -1, [], []),
                lambda: admin.set_area("hall", "hard", 0, ["door-a"], ["door-a"])):
        with pytest.raises(ApplianceError):
            bad()
    assert node.data.biometric.revision == head and not node.store.access_enforced()
    admin.put_group("g")
    with pytest.raises(ApplianceError) as missing:
        admin.set_member("g", "subject-that-is-not-enrolled")
    assert missing.value.code is ErrorCode.SUBJECT_NOT_FOUND
