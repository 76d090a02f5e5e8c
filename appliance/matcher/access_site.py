"""The site's access rules as the matcher uses them: which doors a person's template may be
cached at (``doors_of``), the rules each door receives with its sync answers (``door_rules``,
``cache_access``), and the decision on a central match (``decide``), with the passback state
kept in the sync store so every replica sees the same presence."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from appliance.access.passback import PassbackTracker
from appliance.access.rules import AccessPolicy, AccessVerdict, DoorRules
from appliance.matcher.sync_store import EventRecord, SyncStore
from appliance.protocol import messages, topics

PASSBACK_ALARM = "passback_violation"  # the door-log kind of a soft anti-passback violation


class SiteAccess:
    def __init__(self, store: SyncStore, tz: str = "UTC"):
        self.store, self.tz = store, tz
        self.tracker = PassbackTracker(store)

    def enforced(self) -> bool:
        return self.store.access_enforced()

    def doors_of(self, subject_id: str) -> frozenset[str] | None:
        """The doors whose caches may hold the subject; None: rules not enforced (every door)."""
        return self.store.subject_doors(subject_id) if self.enforced() else None

    def door_rules(self, door: str) -> DoorRules:
        return self.store.door_rules(door, self.tz)

    def cache_access(self, subject_id: str, rules: DoorRules) -> dict:
        """What a door's cache holds for the subject: the groups granting that door, validity."""
        if not rules.enforced:
            return {}
        subject = self.store.access_subject(subject_id)
        return {"g": sorted(subject.groups & set(rules.grants)), **subject.validity.to_wire()}

    def decide(self, subject_id: str, door: str, at: float) -> AccessVerdict:
        """May the matched ``subject_id`` pass ``door`` at Unix time ``at``?"""
        rules = self.door_rules(door)
        policy = AccessPolicy({door: rules}, self.tracker)
        return policy.decide(self.store.access_subject(subject_id), door, datetime.fromtimestamp(at, timezone.utc))

    def record_violation(self, subject_id: str, door: str, at: float) -> None:
        """A soft passback violation the matcher let through, as an alarm in the door log."""
        self.store.record_events([EventRecord(messages.new_id(), door, topics.ALARM, PASSBACK_ALARM, at,
                                              {"subject": subject_id, "mode": "soft", "by": "matcher"})], time.time())
