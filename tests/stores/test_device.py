"""The door's cache keeps what the access rules need offline: the door's rules and each
person's access, through deltas and snapshots alike, and its own passback book (real
SQLCipher file)."""
from __future__ import annotations

import numpy as np

from appliance.stores.device import CacheEntry, DeviceCache
from appliance.vision.templates import Template

PACK = ("pack", "1")


def entry(subject: str, revision: int, access: dict) -> CacheEntry:
    return CacheEntry(subject, Template(np.ones(4, np.float32) / 2, *PACK), revision, "L* L*", "", access)


def test_rules_and_access_survive_deltas_snapshots_and_reopening(tmp_path, keys):
    cache = DeviceCache.open(tmp_path / "cache.db", keys)
    assert cache.rules() == {} and cache.subject_access("s1") == {}
    rules = {"door": "door-a", "tz": "Asia/Shanghai", "grants": {"staff": {"mon": ["08:00-18:00"]}}}
    generation = cache.generation
    cache.put_rules(rules)
    assert cache.rules() == rules and cache.generation == generation + 1
    cache.put_rules(rules)  # unchanged: no reload for the deciders
    assert cache.generation == generation + 1
    assert cache.apply_changes(0, 1, [entry("s1", 1, {"g": ["staff"], "u": 100.0})], [])
    assert cache.subject_access("s1") == {"g": ["staff"], "u": 100.0}
    assert cache.apply_changes(1, 2, [entry("s1", 2, {"g": ["night"]})], [])  # restamped: new access
    assert cache.subject_access("s1") == {"g": ["night"]}
    assert cache.stage_snapshot("a" * 32, 5, "", "s2", [entry("s2", 5, {"g": ["staff"]})], complete=True)
    assert cache.subject_ids() == ["s2"] and cache.subject_access("s2") == {"g": ["staff"]}
    assert cache.presence("hall", "s2") is None
    cache.set_presence("hall", "s2", True, 50.0)
    cache.set_presence("hall", "s3", True, 51.0, "req-1")  # the pass that entered: its retry is no second entry
    cache.close()
    reopened = DeviceCache.open(tmp_path / "cache.db", keys)
    try:
        assert reopened.rules() == rules and reopened.subject_access("s2") == {"g": ["staff"]}
        assert reopened.presence("hall", "s2") == (True, 50.0, "")  # the door's passback book outlives a restart
        assert reopened.presence("hall", "s3") == (True, 51.0, "req-1")
    finally:
        reopened.close()
