"""Which templates a door device may hold.

A subject's template may be on a device when the subject gave an active
``face-local-matching`` consent and the subject's door groups include the device's group (no
group assigned: every group). A change that makes a subject ineligible for a device reaches
it as a tombstone. With the masked name and the card's claim hash, this is the subject's
``Profile`` at one revision (cached: revisions never change).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.security.masking import mask_name
from appliance.security.roles import Principal
from appliance.stores.device import claim_hash

LOCAL_MATCH_SCOPE = "face-local-matching"  # consent that allows a template on door devices
DEFAULT_GROUP = "default"
PROFILE_CACHE = 200_000  # profiles remembered before the cache starts over


@dataclass(frozen=True)
class Profile:
    local_consent: bool
    groups: frozenset[str]
    display: str  # masked name
    claim: str  # claim hash of the card, "" when none

    def allows(self, group: str) -> bool:
        return self.local_consent and (not self.groups or group in self.groups)


NOWHERE = Profile(False, frozenset(), "", "")


class Profiles:
    """Each subject's profile at a revision, from the identity registry and its groups."""

    def __init__(self, identity, groups: Callable[[str], frozenset[str]], principal: Principal):
        self.identity, self.groups, self.principal = identity, groups, principal
        self._cache: dict[tuple[str, int], Profile] = {}

    def get(self, subject_id: str, revision: int) -> Profile:
        key = (subject_id, revision)
        found = self._cache.get(key)
        if found is None:
            try:
                person = self.identity.person(self.principal, subject_id)
                consents = self.identity.consents(self.principal, subject_id)
            except Exception:  # no identity record (or none readable): never on a device
                return NOWHERE
            local = any(c.active and c.scope == LOCAL_MATCH_SCOPE for c in consents)
            found = Profile(local, self.groups(subject_id), mask_name(person.name), claim_hash(person.card_no))
            if len(self._cache) > PROFILE_CACHE:
                self._cache.clear()
            self._cache[key] = found
        return found
