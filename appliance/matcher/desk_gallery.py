"""The enrollment desk's view of who is enrolled: loaded once, then kept on the revision
stream, so a duplicate check or an identification costs one search, not a decryption of
every template.

Why its own follower: the desk runs in the admin CLI and the web console's process, beside
(not inside) the matcher replicas, and it must not announce revisions to devices - that is
the replicas' job (``matcher.replica``). It applies the same changes to a ``LoadedGallery``
(``matcher.loaded``: masked names, unreadable templates quarantined) before each use, so a
deletion made anywhere (CLI, API, retention) is never reported as a duplicate afterwards.
Decisions use ``matching.MatchEngine`` with the door's threshold: the same rules as the door.
"""
from __future__ import annotations

import threading
import time

from appliance.matcher.loaded import LoadedGallery, load_gallery
from appliance.matcher.replica_io import Auditor
from appliance.matching import Candidate, MatchEngine, Verdict
from appliance.packs import ModelPack
from appliance.security.masking import mask_name
from appliance.security.roles import Principal, Role
from appliance.stores.protected import ProtectedData
from appliance.vision.templates import Template

DESK = Principal("enrollment-desk", Role.OPERATOR)  # reads the gallery for the checks, writes nothing
DESK_DEVICE = "enrollment-desk"  # the "device" the decision rules count failures for


class DeskGallery:
    def __init__(self, data: ProtectedData, pack: ModelPack, threshold: float):
        self.data, self.pack, self.threshold = data, pack, threshold
        self._loaded: LoadedGallery | None = None
        self._revision = 0
        self._lock = threading.Lock()

    def current(self) -> LoadedGallery:
        """The gallery at the store's head revision (loaded on first use)."""
        with self._lock:
            head = self.data.biometric.revision
            if self._loaded is None:
                self._loaded = load_gallery(self.data, DESK, self.pack)
            else:
                self._follow(head)
            self._revision = head
            return self._loaded

    def _follow(self, head: int) -> None:
        loaded = self._loaded
        assert loaded is not None
        if head <= self._revision:
            return
        ups, tombs = self.data.biometric.changes_since(self._revision, upto=head, pack=(self.pack.id,
                                                                                       self.pack.version))
        for row in ups:
            try:
                template = self.data.biometric.template(DESK, row.subject_id, self.pack.id, self.pack.version,
                                                        self.data.vault)
                person = self.data.identity.person(DESK, row.subject_id)
                loaded.upsert(row.subject_id, template, mask_name(person.name), person.card_no)
            except Exception as exc:  # unreadable: left out with one alarm, as a replica does
                loaded.quarantine(row.subject_id, exc, Auditor(DESK.actor, self.data.audit), DESK.actor)
        for tomb in tombs:
            loaded.remove(tomb.subject_id)

    def decide(self, template: Template) -> tuple[Verdict, Candidate | None, str]:
        """1:N with the door's rules: the verdict, the best candidate (its score is for
        ``--debug`` only) and the masked name of whoever matched."""
        loaded = self.current()
        with loaded.lock:
            # a fresh engine: the desk's own checks never lock anyone out
            verdict = MatchEngine(loaded.gallery, self.threshold, lambda claim: None).decide(
                DESK_DEVICE, template, "", time.time())
            best = loaded.gallery.best(template)
            return verdict, best, loaded.display_names.get(verdict.subject_id, "")
