"""The matcher's access decision over the real sync store: rules per door in the site's zone,
and anti-passback presence shared by every replica that opens the same store."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from appliance.access.rules import AccessPolicy, AccessVerdict, Validity
from appliance.access.schedule import zone
from appliance.matcher import access_site
from appliance.matcher.access_admin import AccessAdmin
from appliance.matcher.access_site import SiteAccess
from appliance.matcher.access_store import ACCESS_GENERATION_MIGRATION, PRESENCE_PASS_MIGRATION
from appliance.matcher.sync_store import SyncStore
from matcherkit import ADMIN

CALLS = 500
MEMO_SPEED_UP = 3  # one PRAGMA per decision instead of six queries (measured ~7x with one group)


def at(*args) -> float:
    return datetime(*args, tzinfo=zone("Asia/Shanghai")).timestamp()


def test_decisions_follow_the_site_zone_and_passback_is_shared(node, tmp_path, keys):
    alice, _ = node.enroll("Alice Wong")
    admin = AccessAdmin(node.data, node.store, ADMIN)
    assert SiteAccess(node.store).decide(alice, "door-a", at(2026, 12, 7, 3, 0)).granted  # no rules yet
    admin.put_group("night", {"mon": ["22:00-24:00"], "tue": ["00:00-06:00"]})
    admin.grant_doors("night", ["door-a", "door-b"])
    admin.set_member("night", alice)
    site = SiteAccess(node.store, "Asia/Shanghai")
    assert site.decide(alice, "door-a", at(2026, 12, 7, 23, 59, 59)).granted
    assert site.decide(alice, "door-a", at(2026, 12, 8, 0, 0, 0)).granted
    assert site.decide(alice, "door-a", at(2026, 12, 8, 6, 0, 0)).reason == "outside_schedule"
    assert site.decide(alice, "door-c", at(2026, 12, 7, 23, 0)).reason == "not_in_group"
    assert SiteAccess(node.store, "UTC").decide(alice, "door-a", at(2026, 12, 7, 23, 0)).reason == \
        "outside_schedule"  # 15:00 UTC: the zone matters
    admin.set_area("hall", "hard", 0, ["door-a"], ["door-b"])
    other = SiteAccess(SyncStore.open(tmp_path / "central" / "sync.db", keys), "Asia/Shanghai")  # a second replica
    try:
        assert site.decide(alice, "door-a", at(2026, 12, 7, 22, 30)).granted
        assert other.decide(alice, "door-a", at(2026, 12, 7, 22, 31)).reason == "anti_passback"
        assert other.decide(alice, "door-b", at(2026, 12, 7, 22, 32)).granted
        assert site.decide(alice, "door-a", at(2026, 12, 7, 22, 33)).granted
    finally:
        other.store.close()


def test_remembered_rules_follow_every_change_of_this_connection_or_another(node, tmp_path, keys):
    alice, _ = node.enroll("Alice Wong")
    site, now = SiteAccess(node.store), time.time()
    assert site.decide(alice, "door-a", now).granted and not site.enforced()  # remembered: no rules
    AccessAdmin(node.data, node.store, ADMIN).put_group("staff")  # through the same connection
    assert site.enforced() and site.decide(alice, "door-a", now).reason == "not_in_group"
    other = SyncStore.open(tmp_path / "central" / "sync.db", keys)  # another replica, the admin's process
    try:
        other.set_group_doors("staff", ["door-a"], True)
        other.set_member("staff", alice, True)
        assert site.decide(alice, "door-a", now).granted
        other.set_validity(alice, Validity(None, now - 1))
        assert site.decide(alice, "door-a", now).reason == "expired"
        other.set_holiday("2026-12-25", "Christmas", True)
        assert "2026-12-25" in {d.isoformat() for d in site.door_rules("door-a").holidays.dates}
        other.record_events([], now)  # a commit elsewhere in the file: read again, same answer
        assert site.decide(alice, "door-a", now).reason == "expired"
        memo = site.current()  # another replica's presence is no change of the rules: the memo stays
        other.set_presence("hall", alice, True, now)
        assert site.current() is memo and site.decide(alice, "door-a", now).reason == "expired"
        other.set_validity(alice, Validity(None, None))  # a change of the rules does not
        assert site.current() is not memo and site.decide(alice, "door-a", now).granted
    finally:
        other.close()


def test_a_remembered_decision_costs_a_fraction_of_reading_the_rules(node):
    alice, _ = node.enroll("Alice Wong")
    admin = AccessAdmin(node.data, node.store, ADMIN)
    admin.put_group("staff")
    admin.grant_doors("staff", ["door-a"])
    admin.set_member("staff", alice)
    site, now = SiteAccess(node.store), time.time()

    def cost(decide) -> float:
        decide()
        start = time.thread_time()
        for _ in range(CALLS):
            decide()
        return time.thread_time() - start

    def unremembered() -> AccessVerdict:  # what every decision cost before (issue 17)
        rules = node.store.door_rules("door-a", site.tz)
        return AccessPolicy({"door-a": rules}, site.tracker).decide(
            node.store.access_subject(alice), "door-a", datetime.fromtimestamp(now, timezone.utc))

    assert unremembered() == site.decide(alice, "door-a", now)
    remembered, direct = cost(lambda: site.decide(alice, "door-a", now)), cost(unremembered)
    assert remembered * MEMO_SPEED_UP < direct, (remembered, direct)


def test_a_full_memo_starts_again_and_still_answers_right(node, monkeypatch):
    monkeypatch.setattr(access_site, "MAX_REMEMBERED", 2)
    people = [node.enroll(name)[0] for name in ("Alice Wong", "Bob Lee", "Carol Ng")]
    admin = AccessAdmin(node.data, node.store, ADMIN)
    admin.put_group("staff")
    admin.grant_doors("staff", ["door-a", "door-b", "door-c"])
    admin.set_member("staff", people[0])
    site, now = SiteAccess(node.store), time.time()
    for _ in range(2):
        assert [site.decide(p, door, now).granted for p in people for door in ("door-a", "door-b", "door-c")] == \
            [True] * 3 + [False] * 6
        memo = site.current()
        assert len(memo.subjects) <= 2 and len(memo.rules) <= 2


def test_presence_recorded_before_passes_had_ids_reads_as_no_pass(tmp_path, keys):
    class Before(SyncStore):  # the sync store as it was before the pass id column
        MIGRATIONS = SyncStore.MIGRATIONS[:SyncStore.MIGRATIONS.index(PRESENCE_PASS_MIGRATION)]

    old = Before.open(tmp_path / "sync.db", keys)
    old.execute("INSERT INTO access_presence VALUES ('hall', 's1', 1, 50.0)")
    old.close()
    store = SyncStore.open(tmp_path / "sync.db", keys)
    try:
        assert store.presence("hall", "s1") == (True, 50.0, "")  # inside, by no known pass: a retry cannot match it
        store.set_presence("hall", "s1", True, 60.0, "req-1")
        assert store.presence("hall", "s1") == (True, 60.0, "req-1")
    finally:
        store.close()


def test_a_store_from_before_the_rules_count_gets_one_and_raises_it(tmp_path, keys):
    class Before(SyncStore):  # the sync store as it was before ``access_generation``
        MIGRATIONS = SyncStore.MIGRATIONS[:SyncStore.MIGRATIONS.index(ACCESS_GENERATION_MIGRATION)]

    old = Before.open(tmp_path / "sync.db", keys)
    old.execute("INSERT INTO access_groups VALUES ('staff', '{}')")  # a rule kept across the migration
    old.close()
    store = SyncStore.open(tmp_path / "sync.db", keys)
    try:
        assert store.access_generation() == 0 and store.group_names() == ["staff"]
        store.set_holiday("2026-12-25", "Christmas", True)
        assert store.access_generation() == 1
    finally:
        store.close()


def test_two_replicas_deciding_entries_at_once_cannot_both_be_first(node, tmp_path, keys):
    """The presence read and its record are one write transaction: a replica deciding an entry
    while another is between its read and its record waits, then sees that entry."""
    alice, _ = node.enroll("Alice Wong")
    admin = AccessAdmin(node.data, node.store, ADMIN)
    admin.put_group("staff", {"mon": ["00:00-24:00"]})
    admin.grant_doors("staff", ["door-a", "door-c"])
    admin.set_member("staff", alice)
    admin.set_area("hall", "hard", 0, ["door-a", "door-c"], [])
    other = SiteAccess(SyncStore.open(tmp_path / "central" / "sync.db", keys), "Asia/Shanghai")
    monday = at(2026, 12, 7, 10, 0)
    verdicts: list[AccessVerdict] = []
    try:
        with node.store.passing():  # this replica is between reading alice outside and recording her in
            assert node.store.presence("hall", alice) is None
            racing = threading.Thread(target=lambda: verdicts.append(other.decide(alice, "door-c", monday, None, "r2")))
            racing.start()
            time.sleep(0.5)
            assert not verdicts  # the other replica waits for this pass
            node.store.set_presence("hall", alice, True, monday, "r1")
        racing.join(10)
        assert [(v.granted, v.reason) for v in verdicts] == [(False, "anti_passback")]
    finally:
        other.store.close()
