"""The revision stream for device caches: what answers a device's ``sync_request``.

Revisions come from the central ``BiometricStore``: every upsert and tombstone has its own
store-wide revision. A device asks for "everything after R" and gets ``Delta`` messages,
each moving it from one whole revision to the next (``changes``). A device too far behind
(``snapshot_after``), ahead of the store, or whose digest does not match gets the full set
in pages instead (``snapshot``), which it swaps in atomically. Only what the device may
hold (``eligibility``) is sent; the rest reaches it as tombstones. No transport here: the
sync handler and the tests share it.
"""
from __future__ import annotations

import logging
import threading

from appliance.matcher.eligibility import Profile, Profiles
from appliance.protocol import messages
from appliance.protocol.sync_entries import TombstoneEntry, UpsertEntry
from appliance.security.roles import Principal, Role
from appliance.stores.device import cache_digest
from appliance.stores.protected import ProtectedData

log = logging.getLogger(__name__)

ENTRIES_BYTES = 40_000  # upserts per delta message stay under the 48 KiB message limit
ENTRY_OVERHEAD = 200  # bytes of an upsert entry besides its base64 template
MESSAGES_PER_ANSWER = 8  # deltas per sync answer; the device asks again for more
SNAPSHOT_ATTEMPTS = 5  # re-reads of a snapshot whose head moved before giving up for this round


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

    @property
    def pack(self) -> tuple[str, str]:
        return self.pack_id, self.pack_version

    def head(self) -> int:
        return self.data.biometric.revision

    def expected_digest(self, group: str) -> str:
        """The digest of what a device of ``group`` at the head should hold."""
        rows = self.data.biometric.rows(pack=self.pack)
        return cache_digest([(r.subject_id, self.pack_id, self.pack_version, r.revision) for r in rows
                             if self.profiles.get(r.subject_id, r.revision).allows(group)])

    # -- answers --------------------------------------------------------------------------
    def answer(self, request: messages.SyncRequest, group: str) -> tuple[list[messages.Delta], str]:
        """The deltas that answer a device's request, and why (for stats)."""
        with self._lock:
            head = self.head()
            if request.snapshot_id and request.snapshot_revision == head:
                return self.snapshot(request.request_id, request.snapshot_id, request.snapshot_revision,
                                     request.cursor, group, head), "snapshot"
            if request.snapshot_id:
                # the templates moved on since the device began staging: pages read now would
                # mix two states (an overwritten template's old version is gone), so start over
                return self.snapshot(request.request_id, messages.new_id(), head, "", group, head), "snapshot_restart"
            if request.revision > head or head - request.revision > self.snapshot_after:
                return self.snapshot(request.request_id, messages.new_id(), head, "", group, head), "snapshot"
            if request.revision < head:
                return self.changes(request.request_id, request.revision, group, head), "changes"
            if request.digest and request.digest != self.expected_digest(group):
                return self.snapshot(request.request_id, messages.new_id(), head, "", group, head), "digest_mismatch"
            return [self._delta(request.request_id, "changes", head, head, head)], "current"

    def changes(self, request_id: str, after: int, group: str, head: int) -> list[messages.Delta]:
        """Up to ``MESSAGES_PER_ANSWER`` deltas from ``after`` towards ``head``, in revision order."""
        per = self.per_message
        limit = per * MESSAGES_PER_ANSWER
        ups, tombs = self.data.biometric.changes_since(after, upto=head, pack=self.pack, limit=limit)
        items = sorted([(r.revision, r.subject_id, True) for r in ups] +
                       [(t.revision, t.subject_id, False) for t in tombs])
        exhausted = len(ups) < limit and len(tombs) < limit and len(items) <= limit
        items = items[:limit]
        out, base = [], after
        for start in range(0, max(len(items), 1), per):
            chunk = items[start:start + per]
            upserts, tombstones = [], []
            for revision, subject, is_upsert in chunk:
                profile = self.profiles.get(subject, revision) if is_upsert else None
                if profile is not None and profile.allows(group):
                    upserts.append(self._entry(subject, revision, profile))
                else:  # deleted, or not allowed on this device (any older copy must go)
                    tombstones.append(TombstoneEntry(subject, revision).to_wire())
            final = start + per >= len(items)
            revision = head if final and exhausted else (chunk[-1][0] if chunk else base)
            out.append(self._delta(request_id, "changes", base, revision, head, upserts=upserts,
                                   tombstones=tombstones, last=final))
            base = revision
        return out

    def snapshot(self, request_id: str, snapshot_id: str, revision: int, cursor: str, group: str,
                 head: int) -> list[messages.Delta]:
        """Pages of the cache contents at ``revision`` (= head). Pages can only be read at the
        head, so if the head moves while they are read, the snapshot starts over."""
        for _ in range(SNAPSHOT_ATTEMPTS):
            pages = self._snapshot_pages(request_id, snapshot_id, revision, cursor, group, head)
            now = self.head()
            if now == revision:
                return pages
            snapshot_id, revision, cursor, head = messages.new_id(), now, "", now
        log.warning("snapshot for %s not served: enrollment changed under %d attempts", request_id, SNAPSHOT_ATTEMPTS)
        return []  # the device asks again on its next sync round

    def _snapshot_pages(self, request_id: str, snapshot_id: str, revision: int, cursor: str, group: str,
                        head: int) -> list[messages.Delta]:
        per = self.per_message
        out = []
        for index in range(MESSAGES_PER_ANSWER):
            page: list[dict] = []
            after = cursor
            while len(page) < per:
                rows = self.data.biometric.snapshot_page(self.pack, cursor, per)
                if not rows:
                    break
                for row in rows:
                    cursor = row.subject_id
                    profile = self.profiles.get(row.subject_id, row.revision)
                    if profile.allows(group):
                        page.append(self._entry(row.subject_id, row.revision, profile))
                        if len(page) == per:
                            break
            complete = len(page) < per
            out.append(self._delta(request_id, "snapshot", 0, revision, head, upserts=page, snapshot_id=snapshot_id,
                                   after=after, cursor=cursor, complete=complete,
                                   last=complete or index == MESSAGES_PER_ANSWER - 1))
            if complete:
                break
        return out

    def _entry(self, subject_id: str, revision: int, profile: Profile) -> dict:
        template = self.data.biometric.template(self.principal, subject_id, self.pack_id, self.pack_version,
                                                self.data.vault)
        return UpsertEntry(subject_id, revision, template.vector, profile.display, profile.claim).to_wire()

    def _delta(self, request_id: str, kind: str, base: int, revision: int, head: int, **extra) -> messages.Delta:
        return messages.Delta(request_id, kind, base, revision, head, self.pack_id, self.pack_version, **extra)
