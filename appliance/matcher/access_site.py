"""The site's access rules as the matcher uses them: which doors a person's template may be
cached at (``doors_of``), the rules each door receives with its sync answers (``door_rules``,
``cache_access``), and the decision on a central match (``decide``), with the passback state
kept in the sync store so every replica sees the same presence.

What a decision reads of the rules (whether they are enforced, a door's rules, a person's
groups and validity) is remembered while the store's ``access_generation`` is unchanged: one
query per decision, or per batch of requests decided together (``current``), instead of three
to six queries per decision (issue 17). A change of the rules through any connection (this
one, another replica's, the admin's process) raises it in its own transaction and empties the
memo before the next read, so no decision uses rules older than the last change committed
before it (or its batch) began; the other replicas' events and presence leave it be.
Presence (anti-passback) is never remembered; a pass a door granted alone reaches the shared
presence book with its event (``merge_door_pass``)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from appliance.access.passback import PassbackTracker
from appliance.access.rules import ENTRY, OFF, AccessPolicy, AccessVerdict, DoorRules, Subject
from appliance.matcher.sync_store import EventRecord, SyncStore
from appliance.protocol import messages, topics

PASSBACK_ALARM = "passback_violation"  # the door-log kind of a soft anti-passback violation
# people and doors one memo holds; past it that part starts again: a bound on memory (~0.6 KB
# a person, so ~6 MB), not on correctness - a person read again is one query
MAX_REMEMBERED = 10_000


@dataclass
class AccessMemo:
    """What was read of the access tables while the store's ``access_generation`` was ``generation``."""

    generation: int
    enforced: bool | None = None
    rules: dict[str, DoorRules] = field(default_factory=dict)
    subjects: dict[str, Subject] = field(default_factory=dict)


class SiteAccess:
    def __init__(self, store: SyncStore, tz: str = "UTC"):
        self.store, self.tz = store, tz
        self.tracker = PassbackTracker(store)
        self._memo = AccessMemo(-1)

    def current(self) -> AccessMemo:
        """The memo for the tables as they are now (one query). The generation is read before
        the data, so whatever a memo holds is at least as new as its generation (threads share
        it safely: a racing reader at worst replaces a memo, never fills one with older rows)."""
        generation = self.store.access_generation()
        memo = self._memo
        if memo.generation != generation:
            memo = self._memo = AccessMemo(generation)
        return memo

    def enforced(self) -> bool:
        memo = self.current()
        if memo.enforced is None:
            memo.enforced = self.store.access_enforced()
        return memo.enforced

    def subject(self, subject_id: str, memo: AccessMemo | None = None) -> Subject:
        """The person's groups and validity (``AccessTables.access_subject``), remembered."""
        return _remembered((memo or self.current()).subjects, subject_id, self.store.access_subject)

    def doors_of(self, subject_id: str) -> frozenset[str] | None:
        """The doors whose caches may hold the subject; None: rules not enforced (every door)."""
        return self.store.subject_doors(subject_id) if self.enforced() else None

    def door_rules(self, door: str, memo: AccessMemo | None = None) -> DoorRules:
        return _remembered((memo or self.current()).rules, door, lambda key: self.store.door_rules(key, self.tz))

    def cache_access(self, subject_id: str, rules: DoorRules) -> dict:
        """What a door's cache holds for the subject: the groups granting that door, validity."""
        if not rules.enforced:
            return {}
        subject = self.subject(subject_id)
        return {"g": sorted(subject.groups & set(rules.grants)), **subject.validity.to_wire()}

    def decide(self, subject_id: str, door: str, at: float, memo: AccessMemo | None = None,
               pass_id: str = "") -> AccessVerdict:
        """May the matched ``subject_id`` pass ``door`` at Unix time ``at``? ``memo``: the rules
        as ``current`` read them for the batch this decision is one of; None: read them now.
        ``pass_id``: the request's id - the presence it sets is shared by every replica, so a
        retry of this request that reaches another one is not taken for a second entry."""
        memo = memo or self.current()
        rules = self.door_rules(door, memo)
        # without rules the policy grants whoever it is: their groups and validity are not read
        subject = self.subject(subject_id, memo) if rules.enforced else Subject(subject_id)
        return AccessPolicy({door: rules}, self.tracker).decide(subject, door, datetime.fromtimestamp(at, timezone.utc),
                                                                pass_id)

    def merge_door_pass(self, subject_id: str, door: str, at: float, pass_id: str,
                        memo: AccessMemo | None = None) -> bool:
        """A pass ``door`` granted from its cache at ``at`` (while it decided alone), taken into
        the shared presence book if it is newer than what the book holds for the person in the
        door's area; whether it was. Without it, a person who left by a door deciding alone would
        still be inside for every replica after the outage (hard anti-passback would refuse their
        next entry), and one who came in would be outside (a second entry let through). ``memo``:
        the rules as ``current`` read them for a batch of events; None: read them now."""
        area = self.door_rules(door, memo).area
        if area is None or area.mode == OFF:
            return False
        return self.tracker.merge(area.area, subject_id, area.direction == ENTRY, at, pass_id)

    def record_violation(self, subject_id: str, door: str, at: float) -> None:
        """A soft passback violation the matcher let through, as an alarm in the door log."""
        self.store.record_events([EventRecord(messages.new_id(), door, topics.ALARM, PASSBACK_ALARM, at,
                                              {"subject": subject_id, "mode": "soft", "by": "matcher"})], time.time())


def _remembered(table: dict, key: str, read: Callable[[str], Any]) -> Any:
    """``table[key]``, read once; a full table starts again (bounded by ``MAX_REMEMBERED``)."""
    found = table.get(key)
    if found is None:
        if len(table) >= MAX_REMEMBERED:
            table.clear()
        found = table[key] = read(key)
    return found
