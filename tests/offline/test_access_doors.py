"""Access rules at real doors (real Mosquitto with TLS, real SQLCipher stores, the matcher's
real sync store and revision stream): a person is let through only at the doors of their
groups, within their schedule, in central, local and local-first modes; a revoked membership
and a changed schedule reach the door's cache and hold offline; anti-passback, hard and soft."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from appliance.access.schedule import WEEKDAYS
from appliance.edge.offline import open_door
from appliance.matcher.access_admin import AccessAdmin
from appliance.protocol import messages
from offkit import ADMIN, PACK, make_site, offline_config, probe_of, request, start_matcher, wait_for

ALWAYS = {day: ["00:00-24:00"] for day in WEEKDAYS}


def closed_now() -> dict:
    """A schedule whose only window is two days from now (UTC, the test matcher's zone): closed
    today and no spill-over from yesterday."""
    later = datetime.now(timezone.utc) + timedelta(days=2)
    return {WEEKDAYS[later.weekday()]: ["10:00-11:00"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory, config):
    made = make_site(tmp_path_factory.mktemp("access-site"), config, people=4)
    made.alice, made.bob, made.carol, made.dave = list(made.people)
    yield made
    made.broker.stop()
    made.data.close()


@pytest.fixture(scope="module")
def matcher(site):
    running = start_matcher(site)
    admin = AccessAdmin(site.data, running.store, ADMIN)
    admin.put_group("front", ALWAYS)
    admin.grant_doors("front", ["door-a", "door-c"])
    admin.set_member("front", site.alice)
    admin.set_member("front", site.dave)
    admin.put_group("night", closed_now())
    admin.grant_doors("night", ["door-b"])
    admin.set_member("night", site.bob)
    running.admin = admin
    running.stopped = False
    yield running
    if not running.stopped:
        running.stop()
    running.store.close()


def ask(site, door, person: str) -> messages.Decision:
    return door.decider.request(request(door.link.device_id, probe_of(site.people[person], site.rng)), PACK)


def test_groups_and_schedules_hold_in_every_mode(site, matcher):
    for mode in ("central", "local", "local-first"):
        door_a = open_door(site, "door-a", offline_config(mode=mode), threshold=0.4)
        door_b = open_door(site, "door-b", offline_config(mode=mode), threshold=0.4)
        try:
            assert door_a.sync.wait_current(10) and door_b.sync.wait_current(10)
            assert door_a.decider.mode == mode
            # a door's cache holds only the people a group grants it
            assert set(door_a.cache.subject_ids()) == {site.alice, site.dave}
            assert set(door_b.cache.subject_ids()) == {site.bob}
            assert ask(site, door_a, site.alice).accepted, mode
            refused = {name: ask(site, door, person) for name, door, person in (
                ("bob at a", door_a, site.bob), ("carol at a", door_a, site.carol),
                ("alice at b", door_b, site.alice), ("bob at b", door_b, site.bob))}
            assert not any(d.accepted or d.display_name or d.subject for d in refused.values()), (mode, refused)
            assert refused["bob at b"].reason == messages.Reason.ACCESS[1]  # outside_schedule, from the cache too
            if mode != "local":  # the matcher found the face and the rules refused it
                assert refused["bob at a"].reason == "not_in_group" and refused["carol at a"].reason == "not_in_group"
            else:  # the door's cache never held them
                assert refused["bob at a"].reason == messages.Reason.NO_MATCH
        finally:
            door_a.close()
            door_b.close()
    def audited() -> list[tuple[str, str, str]]:  # the matcher commits its decision entries in groups (0.1 s)
        return [(e.action, e.result, e.detail) for e in site.data.audit.entries()]

    assert wait_for(lambda: any(a == "decision.identify" and d.startswith("not_in_group; request ")
                                for a, _, d in audited()))
    assert ("access.member.add", "ok", "group front") in audited()


def test_anti_passback_hard_refuses_a_second_entry_and_soft_records_it(site, matcher):
    matcher.admin.set_area("hall", "hard", 3600, entries=["door-a"], exits=["door-c"])
    door_a = open_door(site, "door-a", offline_config(mode="central"), threshold=0.4)
    door_c = open_door(site, "door-c", offline_config(mode="central"), threshold=0.4)
    try:
        assert door_a.sync.wait_current(10) and door_c.sync.wait_current(10)
        assert ask(site, door_a, site.alice).accepted
        second = ask(site, door_a, site.alice)
        assert not second.accepted and second.reason == "anti_passback" and door_a.decider.last_source == "central"
        assert ask(site, door_c, site.alice).accepted  # out through the exit
        assert ask(site, door_a, site.alice).accepted  # and in again
        matcher.admin.set_area("hall", "soft", 3600, entries=["door-a"], exits=["door-c"])
        assert ask(site, door_a, site.alice).accepted  # inside already: let through, on record
        assert wait_for(lambda: any(e.action == "access.passback_violation" for e in site.data.audit.entries()), 10)
        assert matcher.stats["passback_violations"] == 1
        alarms = [e for e in matcher.store.events("door-a") if e.kind == "passback_violation"]
        assert len(alarms) == 1 and alarms[0].details["subject"] == site.alice and alarms[0].type == "alarm"
        matcher.admin.set_area("hall", "hard", 3600, entries=["door-a"], exits=["door-c"])
    finally:
        door_a.close()
        door_c.close()
    # a door deciding alone keeps its own passes, across a restart: hard passback per door (docs/access.md)
    local = open_door(site, "door-a", offline_config(mode="local"), threshold=0.4)
    try:
        assert local.sync.wait_current(10) and local.cache.rules()["area"]["mode"] == "hard"
        assert ask(site, local, site.alice).accepted and local.decider.last_source == "local"
        assert ask(site, local, site.alice).reason == "anti_passback"
    finally:
        local.close()
    restarted = open_door(site, "door-a", offline_config(mode="local"), threshold=0.4)
    try:
        assert restarted.sync.wait_current(10) and ask(site, restarted, site.alice).reason == "anti_passback"
    finally:
        restarted.close()
    matcher.admin.set_area("hall", "off", 0, entries=["door-a"], exits=["door-c"])


def test_a_pass_a_door_granted_alone_reaches_the_matchers_presence_book(site, matcher):
    """Dave comes in through door-a (the matcher decides: inside), leaves through door-c, which
    decides alone (an outage, or local mode), and comes back to door-a. door-c's local decision
    reaches the matcher as an event and moves him outside in the shared book, so hard
    anti-passback lets him in; before, he stayed inside for every replica and was refused."""
    matcher.admin.set_area("hall", "hard", 3600, entries=["door-a"], exits=["door-c"])
    door_a = open_door(site, "door-a", offline_config(mode="central"), threshold=0.4)
    door_c = open_door(site, "door-c", offline_config(mode="local"), threshold=0.4)
    merged = matcher.stats["door_passes_merged"]
    try:
        assert door_a.sync.wait_current(10) and door_c.sync.wait_current(10)
        assert ask(site, door_a, site.dave).accepted and door_a.decider.last_source == "central"
        assert ask(site, door_c, site.dave).accepted and door_c.decider.last_source == "local"
        assert wait_for(lambda: matcher.stats["door_passes_merged"] == merged + 1, 10)
        inside, _, _ = matcher.store.presence("hall", site.dave)
        assert not inside
        again = ask(site, door_a, site.dave)
        assert again.accepted and door_a.decider.last_source == "central"
        assert ask(site, door_a, site.dave).reason == "anti_passback"  # inside again: the rule still holds
    finally:
        door_a.close()
        door_c.close()
        matcher.admin.set_area("hall", "off", 0, entries=["door-a"], exits=["door-c"])


def test_a_revoked_membership_and_a_new_schedule_reach_the_door_and_hold_offline(site, matcher):
    door_a = open_door(site, "door-a", offline_config(mode="central"), threshold=0.4)
    door_b = open_door(site, "door-b", offline_config(mode="local"), threshold=0.4)
    try:
        assert door_a.sync.wait_current(10) and door_b.sync.wait_current(10)
        assert site.dave in door_a.cache.subject_ids()
        matcher.admin.set_member("front", site.dave, member=False)
        matcher.admin.put_group("night", ALWAYS)  # the rules alone change: a revision, the rules with it
        assert wait_for(lambda: site.dave not in door_a.cache.subject_ids(), 10)
        assert wait_for(lambda: door_b.cache.rules().get("grants", {}).get("night", {}).get("sun") ==
                        ["00:00-24:00"], 10)
        matcher.stop()  # the matcher is gone: the doors decide from what they hold
        matcher.stopped = True
        offline_dave = ask(site, door_a, site.dave)
        assert not offline_dave.accepted
        assert ask(site, door_a, site.alice).accepted and door_a.decider.last_source == "local"
        assert ask(site, door_b, site.bob).accepted  # the new schedule, offline
    finally:
        door_a.close()
        door_b.close()
