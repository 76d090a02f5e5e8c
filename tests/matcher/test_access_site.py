"""The matcher's access decision over the real sync store: rules per door in the site's zone,
and anti-passback presence shared by every replica that opens the same store."""
from __future__ import annotations

from datetime import datetime


from appliance.access.schedule import zone
from appliance.matcher.access_admin import AccessAdmin
from appliance.matcher.access_site import SiteAccess
from appliance.matcher.sync_store import SyncStore
from matcherkit import ADMIN


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
