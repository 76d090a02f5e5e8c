"""The revision stream for device caches: what answers a device's ``sync_request``.

Revisions come from the central ``BiometricStore``: every upsert and tombstone has its own
store-wide revision. A device asks for "everything after R" and gets ``Delta`` messages,
each moving it from one whole revision to the next (``changes``). A device too far behind
(``snapshot_after``), ahead of the store, or whose digest does not match gets the full set
in pages instead (``snapshot``), which it swaps in atomically. Only what the device may
hold (``eligibility``) is sent; the rest reaches it as tombstones. Every answer carries the
door's access rules and each upsert the subject's access at that door (docs/access.md), so
the door decides offline as the matcher would, and the site's claim key: an upsert names the
person's card only by its keyed claim (``stores.claims``), with their PIN verifier and face
refusal, so card and card + PIN passes are decided offline too (docs/door-modes.md). People
with no template (they refused face recognition) travel as entries without one, revisioned by
the identity registry's credential stamps (``eligibility.restamp_credentials``); snapshots send
them after the templates (cursor ``CREDENTIAL_CURSOR`` + subject). No transport here: the sync
handler and the tests share it.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import replace

from appliance.access.rules import DoorRules
from appliance.matcher.eligibility import Profile, Profiles
from appliance.protocol import messages
from appliance.protocol.sync_entries import TombstoneEntry, UpsertEntry
from appliance.security.roles import Principal, Role
from appliance.stores.claims import claim_hash, site_claim_key
from appliance.stores.device import cache_digest
from appliance.stores.protected import ProtectedData

log = logging.getLogger(__name__)

ENTRIES_BYTES = 40_000  # upserts per delta message stay under the 48 KiB message limit
ENTRY_OVERHEAD = 340  # bytes of an upsert entry besides its base64 template (a PIN verifier and flag: ~130)
MESSAGES_PER_ANSWER = 8  # deltas per sync answer; the device asks again for more
SNAPSHOT_ATTEMPTS = 5  # re-reads of a snapshot whose head moved before giving up for this round
CREDENTIAL_CURSOR = "+"  # a snapshot cursor in the people without a template ('+' is in no subject id)


def entries_per_message(dimension: int) -> int:
    """Upserts of ``dimension``-d templates that fit one delta (base64: 4 bytes per 3)."""
    return max(1, ENTRIES_BYTES // (max(1, dimension) * 4 * 4 // 3 + ENTRY_OVERHEAD))


class SyncEngine:
    """Answers for the templates of one pack (``pack`` = id, version; ``dimension`` its
    template size, from the pack's manifest)."""

    def __init__(self, data: ProtectedData, profiles: Profiles, pack: tuple[str, str], dimension: int,
                 snapshot_after: int = 5000, principal: Principal | None = None):
        self.data, self.profiles = data, profiles
        self.pack_id, self.pack_version = pack
        self.per_message = entries_per_message(dimension)
        self.snapshot_after = snapshot_after
        self.principal = principal or Principal("sync", Role.OPERATOR)
        self._lock = threading.RLock()
        self._claim_key: bytes | None = None

    @property
    def claim_key(self) -> bytes:
        """The site's claim key (the key vault's), as of the answer being built: ``answer`` reads
        it afresh, so a rotation (``appliance keys rotate claim``) reaches the doors without a
        restart."""
        if self._claim_key is None:
            self._claim_key = site_claim_key(self.data.vault)
        return self._claim_key

    @property
    def pack(self) -> tuple[str, str]:
        return self.pack_id, self.pack_version

    def head(self) -> int:
        return self.data.biometric.revision

    def expected_digest(self, group: str, door: str = "") -> str:
        """The digest of what the device ``door`` of ``group`` at the head should hold."""
        rows = [(r.subject_id, r.revision, True) for r in self.data.biometric.rows(pack=self.pack)]
        rows += self._credential_only(self.data.identity.credential_stamps())
        return cache_digest([(s, self.pack_id, self.pack_version, r) for s, r, face in rows
                             if self.profiles.get(s, r).allows(group, door, face)])

    def _credential_only(self, stamps: Iterable[tuple[str, int]]) -> list[tuple[str, int, bool]]:
        """The credential stamps of people with no template of this pack: (subject, revision, False)."""
        return [(s, r, False) for s, r in stamps if not self.data.biometric.rows(s, pack=self.pack)]

    def _rules(self, door: str) -> DoorRules:
        access = self.profiles.access
        return access.door_rules(door) if access is not None else DoorRules(door)

    # -- answers --------------------------------------------------------------------------
    def answer(self, request: messages.SyncRequest, group: str) -> tuple[list[messages.Delta], str]:
        """The deltas that answer a device's request, and why (for stats)."""
        with self._lock:
            self._claim_key = None  # one vault read per answer; every claim in it keyed alike
            deltas, why = self._answer(request, group)
            rules, key = self._rules(request.device_id).to_wire(), self.claim_key.hex()
            return [replace(d, access={**d.access, "rules": rules} if rules else d.access, claim_key=key)
                    for d in deltas], why

    def _answer(self, request: messages.SyncRequest, group: str) -> tuple[list[messages.Delta], str]:
        head, door = self.head(), request.device_id
        if request.snapshot_id and request.snapshot_revision == head:
            return self.snapshot(request.request_id, request.snapshot_id, request.snapshot_revision,
                                 request.cursor, group, head, door), "snapshot"
        if request.snapshot_id:
            # the templates moved on since the device began staging: pages read now would
            # mix two states (an overwritten template's old version is gone), so start over
            return self.snapshot(request.request_id, messages.new_id(), head, "", group, head, door), \
                "snapshot_restart"
        if request.revision > head or head - request.revision > self.snapshot_after:
            return self.snapshot(request.request_id, messages.new_id(), head, "", group, head, door), "snapshot"
        if request.revision < head:
            return self.changes(request.request_id, request.revision, group, head, door), "changes"
        if request.digest and request.digest != self.expected_digest(group, door):
            return self.snapshot(request.request_id, messages.new_id(), head, "", group, head, door), \
                "digest_mismatch"
        return [self._delta(request.request_id, "changes", head, head, head)], "current"

    def changes(self, request_id: str, after: int, group: str, head: int, door: str = "") -> list[messages.Delta]:
        """Up to ``MESSAGES_PER_ANSWER`` deltas from ``after`` towards ``head``, in revision order."""
        rules = self._rules(door)
        per = self.per_message
        limit = per * MESSAGES_PER_ANSWER
        ups, tombs = self.data.biometric.changes_since(after, upto=head, pack=self.pack, limit=limit)
        stamps = self.data.identity.credential_changes(after, head, limit)
        items = sorted([(r.revision, r.subject_id, True, True) for r in ups] +
                       [(t.revision, t.subject_id, False, True) for t in tombs] +
                       [(r, s, True, False) for s, r, _ in self._credential_only(stamps)])
        exhausted = len(ups) < limit and len(tombs) < limit and len(stamps) < limit and len(items) <= limit
        items = items[:limit]
        out, base = [], after
        for start in range(0, max(len(items), 1), per):
            chunk = items[start:start + per]
            upserts, tombstones = [], []
            for revision, subject, is_upsert, face in chunk:
                profile = self.profiles.get(subject, revision) if is_upsert else None
                if profile is not None and profile.allows(group, door, face):
                    upserts.append(self._entry(subject, revision, profile, face))
                else:  # deleted, or not allowed on this device (any older copy must go)
                    tombstones.append(TombstoneEntry(subject, revision).to_wire())
            final = start + per >= len(items)
            revision = head if final and exhausted else (chunk[-1][0] if chunk else base)
            out.append(self._delta(request_id, "changes", base, revision, head, upserts=upserts,
                                   tombstones=tombstones, last=final, access=self._people(upserts, rules)))
            base = revision
        return out

    def snapshot(self, request_id: str, snapshot_id: str, revision: int, cursor: str, group: str,
                 head: int, door: str = "") -> list[messages.Delta]:
        """Pages of the cache contents at ``revision`` (= head). Pages can only be read at the
        head, so if the head moves while they are read, the snapshot starts over."""
        for _ in range(SNAPSHOT_ATTEMPTS):
            pages = self._snapshot_pages(request_id, snapshot_id, revision, cursor, group, head, door)
            now = self.head()
            if now == revision:
                return pages
            snapshot_id, revision, cursor, head = messages.new_id(), now, "", now
        log.warning("snapshot for %s not served: enrollment changed under %d attempts", request_id, SNAPSHOT_ATTEMPTS)
        return []  # the device asks again on its next sync round

    def _snapshot_pages(self, request_id: str, snapshot_id: str, revision: int, cursor: str, group: str,
                        head: int, door: str) -> list[messages.Delta]:
        per = self.per_message
        rules = self._rules(door)
        out = []
        for index in range(MESSAGES_PER_ANSWER):
            page: list[dict] = []
            after = cursor
            while len(page) < per:
                rows = self._snapshot_rows(cursor, per)
                if not rows:
                    break
                for subject, row_revision, face in rows:
                    cursor = subject if face else CREDENTIAL_CURSOR + subject
                    profile = self.profiles.get(subject, row_revision)
                    if profile.allows(group, door, face):
                        page.append(self._entry(subject, row_revision, profile, face))
                        if len(page) == per:
                            break
            complete = len(page) < per
            out.append(self._delta(request_id, "snapshot", 0, revision, head, upserts=page, snapshot_id=snapshot_id,
                                   after=after, cursor=cursor, complete=complete, access=self._people(page, rules),
                                   last=complete or index == MESSAGES_PER_ANSWER - 1))
            if complete:
                break
        return out

    def _snapshot_rows(self, cursor: str, limit: int) -> list[tuple[str, int, bool]]:
        """(subject, revision, has a template) after ``cursor``: the templates in subject order,
        then the people with none (their cursor begins with ``CREDENTIAL_CURSOR``)."""
        if not cursor.startswith(CREDENTIAL_CURSOR):
            rows = self.data.biometric.snapshot_page(self.pack, cursor, limit)
            if rows:
                return [(r.subject_id, r.revision, True) for r in rows]
            cursor = CREDENTIAL_CURSOR
        after = cursor[len(CREDENTIAL_CURSOR):]
        while stamps := self.data.identity.credential_page(after, limit):
            found = self._credential_only(stamps)
            if found:
                return found
            after = stamps[-1][0]
        return []

    def _entry(self, subject_id: str, revision: int, profile: Profile, face: bool = True) -> dict:
        vector = self.data.biometric.template(self.principal, subject_id, self.pack_id, self.pack_version,
                                              self.data.vault).vector if face else None
        card = profile.card
        return UpsertEntry(subject_id, revision, vector, profile.display, claim_hash(card, self.claim_key),
                           profile.pin if card else "", profile.face_refused).to_wire()

    def _people(self, upserts: list[dict], rules: DoorRules) -> dict:
        """Each upserted person's groups at this door and validity ({} while no rules exist)."""
        access = self.profiles.access
        if access is None or not rules.enforced or not upserts:
            return {}
        return {"people": {u["s"]: access.cache_access(u["s"], rules) for u in upserts}}

    def _delta(self, request_id: str, kind: str, base: int, revision: int, head: int, **extra) -> messages.Delta:
        return messages.Delta(request_id, kind, base, revision, head, self.pack_id, self.pack_version, **extra)
