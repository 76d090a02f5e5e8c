"""A replica on the revision stream: its gallery follows the central store, and the first
replica to claim a revision announces it.

Every replica polls the store revision (``POLL_S``) and applies the same changes to its own
in-memory gallery, masked names and claims included; it claims the new revisions in the
shared sync store, and for those it is first to claim it tells the devices (a ``notice``:
ask for the changes) and third parties (``enrollment_event`` on
``appliance/v1/enrollment/events``: a keyed-hash pseudonym and the masked name, signed with
the node key - never a template, a card number or the internal subject id).

A claim the sync store cannot write (a full disk) leaves the replica's revision where it was:
the gallery serves the changes at once, and the next poll claims and announces them once there
is room - nothing an integration subscribes to is skipped.

A new template that cannot be read is quarantined (``LoadedGallery.quarantine``: left out,
one alarm) and the replica moves on: one bad row must not hold back every later revision.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Callable

from appliance.matcher.eligibility import Profiles
from appliance.matcher.loaded import LoadedGallery
from appliance.errors import ApplianceError, is_unwritable
from appliance.matcher.replica_io import Audit, Auditor, Courier
from appliance.matcher.sync_store import SyncStore
from appliance.protocol import messages, topics
from appliance.security import signing
from appliance.security.envelope import NodeKeys
from appliance.security.roles import Principal
from appliance.stores.biometric import TemplateRow, Tombstone
from appliance.stores.protected import ProtectedData
from appliance.vision.templates import Template

log = logging.getLogger(__name__)

POLL_S = 0.2  # replicas look for new revisions this often
_PSEUDONYM_KEY = b"|integration-pseudonyms"


class ReplicaFollower:
    def __init__(self, name: str, data: ProtectedData, store: SyncStore, profiles: Profiles, loaded: LoadedGallery,
                 courier: Courier, keys: NodeKeys, devices: Callable[[], list[str]], stats: Counter[str],
                 principal: Principal, audit: Audit | None = None):
        self.name, self.data, self.store, self.profiles = name, data, store, profiles
        self.loaded, self.courier, self.keys, self.devices, self.stats = loaded, courier, keys, devices, stats
        self.principal = principal
        self.audit = audit or Auditor(name, data.audit)  # the replica's shared one: one writer at a time
        self.revision = data.biometric.revision  # the gallery was loaded at (at least) this revision
        self._claims_failing = False  # the store refused the last claim (a full disk): logged once
        self._ref_key = hashlib.sha256(keys.signing.private_bytes_raw() + _PSEUDONYM_KEY).digest()

    def follow(self) -> int:
        """Apply new revisions to the in-memory gallery; announce them if this replica is first."""
        head = self.data.biometric.revision
        if head <= self.revision:
            return 0
        gallery = self.loaded.gallery
        ups, tombs = self.data.biometric.changes_since(self.revision, upto=head,
                                                       pack=(gallery.pack_id, gallery.pack_version))
        for row in ups:
            try:
                self._upsert(row)
            except Exception as exc:  # unreadable: quarantined, the other changes still apply
                self.loaded.quarantine(row.subject_id, exc, self.audit, self.name)
                self.stats["templates_quarantined"] += 1
        for tomb in tombs:
            self.loaded.remove(tomb.subject_id)
        try:
            claimed = self.store.claim_announcements([r.revision for r in ups] + [t.revision for t in tombs] or [head],
                                                     self.name)
        except ApplianceError as exc:
            if not is_unwritable(exc):
                raise
            # the gallery has the changes (applying them again is harmless); the revision stays
            # behind, so the next poll claims again and, once there is room, the announcement goes out
            if not self._claims_failing:
                log.warning("%s: revisions up to %d served but not announced yet: %s; free disk space", self.name,
                            head, exc)
            self._claims_failing = True
            self.stats["unwritable:announcement"] += 1
            return len(ups) + len(tombs)
        self._claims_failing = False
        self.revision = head
        self.stats["revisions_followed"] += len(ups) + len(tombs)
        if claimed:
            self._announce([r for r in ups if r.revision in claimed], [t for t in tombs if t.revision in claimed],
                           head)
        return len(ups) + len(tombs)

    def _upsert(self, row: TemplateRow) -> None:
        gallery = self.loaded.gallery
        template = self.data.biometric.template(self.principal, row.subject_id, gallery.pack_id, gallery.pack_version,
                                                self.data.vault)
        profile = self.profiles.get(row.subject_id, row.revision)
        try:
            card = self.data.identity.person(self.principal, row.subject_id).card_no
        except Exception:  # no identity record: matched without a card
            card = ""
        self.loaded.upsert(row.subject_id, Template(template.vector, gallery.pack_id, gallery.pack_version),
                           profile.display, card)

    def _announce(self, ups: list[TemplateRow], tombs: list[Tombstone], head: int) -> None:
        changes = [(r.subject_id, r.revision, True) for r in ups] + [(t.subject_id, t.revision, False) for t in tombs]
        for subject, revision, enrolled in changes:
            event = messages.EnrollmentEvent(
                messages.new_id(), "enrolled" if enrolled else "deleted", self.subject_ref(subject),
                self.profiles.get(subject, revision).display if enrolled else "", revision, time.time())
            body = event.encode()
            # the format signs the event's own bytes, without a domain (docs/protocol.md)
            signature = signing.sign(self.keys.signing, signing.NO_DOMAIN, body).hex()
            envelope = json.dumps({"event": json.loads(body), "signer": self.name, "signature": signature},
                                  separators=(",", ":"))
            try:
                self.courier.publish(topics.ENROLLMENT_EVENTS, envelope.encode("utf-8"))
                self.stats["enrollment_events"] += 1
            except Exception as exc:
                log.warning("%s: enrollment event not published: %s", self.name, exc)
        for device in self.devices():
            try:
                self.courier.sync(device, messages.Delta(messages.new_id(), "notice", head, head, head))
            except Exception as exc:  # an offline device asks on reconnect
                log.debug("%s: notice to %s: %s", self.name, device, exc)

    def subject_ref(self, subject_id: str) -> str:
        """The pseudonym integrations see: a keyed hash, stable, not the internal id."""
        return hmac.new(self._ref_key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
