"""The matcher's in-memory view of the enrolled: gallery, claims and masked names, one lock.

Loaded from the central stores at start (``load_gallery``); a replica then keeps it on the
revision stream (``ReplicaFollower``) while the request handler decides from it, so every
change and every decision holds ``lock``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from appliance.matching import Gallery
from appliance.packs import ModelPack
from appliance.security.masking import mask_name
from appliance.security.roles import Principal
from appliance.stores.protected import ProtectedData
from appliance.vision.templates import Template


@dataclass(frozen=True)
class LoadedGallery:
    gallery: Gallery
    claims: dict[str, str]  # credential (card number) -> subject pseudonym
    display_names: dict[str, str]  # subject pseudonym -> masked name
    lock: threading.RLock = field(default_factory=threading.RLock, compare=False, repr=False)

    def upsert(self, subject_id: str, template: Template, display: str, card: str = "") -> None:
        """A new or re-enrolled subject: template, masked name and card together."""
        with self.lock:
            self.gallery.upsert(subject_id, template)
            self.display_names[subject_id] = display
            if card:
                self.claims[card] = subject_id

    def remove(self, subject_id: str) -> None:
        """A deleted subject: nothing of it stays in memory."""
        with self.lock:
            self.gallery.remove(subject_id)
            self.display_names.pop(subject_id, None)
            for card in [c for c, s in self.claims.items() if s == subject_id]:
                del self.claims[card]


def load_gallery(data: ProtectedData, principal: Principal, pack: ModelPack) -> LoadedGallery:
    """Decrypt the enrolled templates of ``pack`` into memory; masked names only."""
    gallery = Gallery(pack.id, pack.version, pack.embedding_size or 0)
    claims, names = {}, {}
    for subject_id in data.identity.subject_ids(principal):
        person = data.identity.person(principal, subject_id)
        if not data.biometric.rows(subject_id, pack=(pack.id, pack.version)):
            continue
        gallery.upsert(subject_id, data.biometric.template(principal, subject_id, pack.id, pack.version, data.vault))
        if person.card_no:
            claims[person.card_no] = subject_id
        names[subject_id] = mask_name(person.name)
    return LoadedGallery(gallery, claims, names)
