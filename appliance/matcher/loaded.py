"""The matcher's in-memory view of the enrolled: gallery, claims and masked names, one lock.

Loaded from the central stores at start (``load_gallery``); a replica then keeps it on the
revision stream (``ReplicaFollower``) while the request handler decides from it, so every
change and every decision holds ``lock``.

A template that cannot be read (a damaged row, bad ciphertext, a data key gone without a
tombstone, a wrong size) is quarantined, not fatal (issue 12, finding 8: one such row used
to stop the matcher from starting): it is left out of the gallery, the replica serves
everyone else, and ``quarantine`` writes one ``alarm.template_quarantined`` audit entry
naming the masked subject id and the reason. ``LoadedGallery.quarantined`` holds them until
a readable template of the subject arrives (re-enrollment) or it is deleted.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from appliance.errors import ApplianceError
from appliance.matcher.replica_io import Audit, Auditor
from appliance.matching import Gallery
from appliance.matching.gallery import Candidate
from appliance.packs import ModelPack
from appliance.security.masking import mask_name, mask_number
from appliance.security.roles import Principal
from appliance.stores.protected import ProtectedData
from appliance.vision.templates import Template

log = logging.getLogger(__name__)

QUARANTINE_ALARM = "alarm.template_quarantined"


@dataclass(frozen=True)
class LoadedGallery:
    gallery: Gallery
    claims: dict[str, str]  # credential (card number) -> subject pseudonym
    display_names: dict[str, str]  # subject pseudonym -> masked name
    lock: threading.RLock = field(default_factory=threading.RLock, compare=False, repr=False)
    quarantined: dict[str, str] = field(default_factory=dict, compare=False)  # masked subject id -> why

    def upsert(self, subject_id: str, template: Template, display: str, card: str = "") -> None:
        """A new or re-enrolled subject: template, masked name and card together."""
        with self.lock:
            self.gallery.upsert(subject_id, template)
            self.display_names[subject_id] = display
            if card:
                self.claims[card] = subject_id
            self.quarantined.pop(mask_number(subject_id), None)

    def remove(self, subject_id: str) -> None:
        """A deleted subject: nothing of it stays in memory."""
        with self.lock:
            self.gallery.remove(subject_id)
            self.display_names.pop(subject_id, None)
            for card in [c for c, s in self.claims.items() if s == subject_id]:
                del self.claims[card]
            self.quarantined.pop(mask_number(subject_id), None)

    def quarantine(self, subject_id: str, error: Exception, audit: Audit, replica: str) -> str:
        """Leave ``subject_id`` out (an older template of it too: the store no longer holds
        that one), and raise the alarm; returns the reason, without the subject id."""
        masked = mask_number(subject_id)
        code = error.code.name if isinstance(error, ApplianceError) else type(error).__name__
        reason = f"{code}: {error}".replace(subject_id, masked)
        with self.lock:
            self.remove(subject_id)
            self.quarantined[masked] = reason
        log.error("%s: template of %s quarantined (%s)", replica, masked, reason)
        try:
            audit(replica, QUARANTINE_ALARM, masked, "quarantined", reason)
        except Exception:  # the log line and the count remain
            log.exception("%s: quarantine alarm for %s not audited", replica, masked)
        return reason


class SearchedBatch:
    """The gallery as one batch of requests sees it: their 1:N probes searched together in one
    pass (``Gallery.best_batch``: one matrix product instead of one per probe - the search was
    most of a request's CPU under load, issue 17). ``MatchEngine`` asks it as it would ask the
    gallery; a probe that was not in the batch is searched alone. Made and used under the
    ``LoadedGallery`` lock, so no change lands between the search and the decisions."""

    def __init__(self, gallery: Gallery, probes: list[Template]):
        self.gallery = gallery
        self._probes = probes  # held, so the ids below stay theirs
        self._found = dict(zip(map(id, probes), gallery.best_batch(probes))) if probes else {}

    def __contains__(self, subject_id: str) -> bool:
        return subject_id in self.gallery

    def best(self, template: Template) -> Candidate | None:
        if id(template) in self._found:
            return self._found[id(template)]
        return self.gallery.best(template)

    def score(self, subject_id: str, template: Template) -> float | None:
        return self.gallery.score(subject_id, template)


def load_gallery(data: ProtectedData, principal: Principal, pack: ModelPack,
                 audit: Audit | None = None) -> LoadedGallery:
    """Decrypt the enrolled templates of ``pack`` into memory; masked names only. A subject
    whose template cannot be read is quarantined (``audit``: where the alarm goes, by
    default the central audit log under ``principal``'s name) and the rest is loaded."""
    audit = audit or Auditor(principal.actor, data.audit)
    loaded = LoadedGallery(Gallery(pack.id, pack.version, pack.embedding_size or 0), {}, {})
    for subject_id in data.identity.subject_ids(principal):
        try:
            if not data.biometric.rows(subject_id, pack=(pack.id, pack.version)):
                continue
            person = data.identity.person(principal, subject_id)
            template = data.biometric.template(principal, subject_id, pack.id, pack.version, data.vault)
            loaded.upsert(subject_id, template, mask_name(person.name), person.card_no)
        except Exception as exc:  # one unreadable row must not keep the others from being served
            loaded.quarantine(subject_id, exc, audit, principal.actor)
    return loaded
