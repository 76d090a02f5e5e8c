"""Which templates a door device may hold.

A subject's template may be on a device when the subject gave an active
``face-local-matching`` consent, the subject's door groups include the device's group (no
group assigned: every group) and, once the site has access groups (``appliance.access``), a
group of the subject grants that door and the subject's validity has not ended. A change that
makes a subject ineligible for a device reaches it as a tombstone. With the masked name, the
card, the PIN verifier and a face refusal, this is the subject's ``Profile`` at one revision
(cached: revisions never change; an access or credential change restamps the subject,
``matcher.access_admin``, ``cli.credential_commands``: ``restamp_credentials``). A person who refused face recognition
has no template: with a card, their credentials alone may be on the door (``allows(face=False)``),
revisioned by the identity registry's credential stamps. The card number stays on the matcher:
``revisions`` sends only its keyed claim (``stores.claims``).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.access.rules import EXPIRED, Validity
from appliance.matcher.access_site import SiteAccess
from appliance.security.masking import mask_name
from appliance.security.roles import Permission, Principal
from appliance.stores.identity import FACE_REFUSED_SCOPE

LOCAL_MATCH_SCOPE = "face-local-matching"  # consent that allows a template on door devices
DEFAULT_GROUP = "default"
PROFILE_CACHE = 200_000  # profiles remembered before the cache starts over


@dataclass(frozen=True)
class Profile:
    local_consent: bool
    groups: frozenset[str]
    display: str  # masked name
    card: str  # the card number, "" when none (never sent: revisions sends its keyed claim)
    doors: frozenset[str] | None = None  # doors an access group grants; None: access rules not enforced
    validity: Validity = Validity()
    pin: str = ""  # PIN verifier (scrypt), "" when none
    face_refused: bool = False

    def allows(self, group: str, door: str = "", face: bool = True) -> bool:
        """May a device of ``group`` named ``door`` hold the subject (schedules aside: the door
        checks those when it decides)? ``face`` False: their card and PIN without a template
        (only for a card holder who refused face recognition)."""
        held = self.local_consent if face else (self.face_refused and bool(self.card))
        if not held or (self.groups and group not in self.groups):
            return False
        if self.doors is None:
            return True
        return door in self.doors and self.validity.problem(time.time()) != EXPIRED


NOWHERE = Profile(False, frozenset(), "", "")


class Profiles:
    """Each subject's profile at a revision, from the identity registry and its groups."""

    def __init__(self, identity, groups: Callable[[str], frozenset[str]], principal: Principal,
                 access: SiteAccess | None = None):
        self.identity, self.groups, self.principal = identity, groups, principal
        self.access = access  # None: no access rules (a matcher without a sync store)
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
            doors, validity = None, Validity()
            if self.access is not None:
                doors = self.access.doors_of(subject_id)
                validity = self.access.store.access_subject(subject_id).validity
            # the PIN verifier only for a principal that may verify (the sync's): a report's needs none
            readable = person.card_no and self.principal.can(Permission.VERIFY)
            holder = self.identity.card_holder(self.principal, person.card_no) if readable else None
            pin = holder[1] if holder else ""
            refused = any(c.active and c.scope == FACE_REFUSED_SCOPE for c in consents)
            found = Profile(local, self.groups(subject_id), mask_name(person.name), person.card_no, doors, validity,
                            pin, refused)
            if len(self._cache) > PROFILE_CACHE:
                self._cache.clear()
            self._cache[key] = found
        return found


def restamp_credentials(data, principal: Principal, subject_id: str) -> int:
    """A card, PIN or refusal change that door caches must learn: the person's templates get a
    new revision, or, with none, their credential stamp (the revision just after the head, which
    the biometric store then counts from). Returns the head revision."""
    if data.biometric.rows(subject_id):
        return data.biometric.restamp([subject_id])
    revision = data.biometric.revision + 1
    data.identity.stamp_credentials(principal, subject_id, revision)  # first: a device never passes it unseen
    return data.biometric.advance_revision(revision)


def openable_doors(access: SiteAccess | None, subject_id: str, at: float) -> frozenset[str] | None:
    """The doors the person may open under the site's access rules at some time (their groups'
    grants, while their validity has not ended); None: the site has no access rules (every door)."""
    if access is None:
        return None
    doors = access.doors_of(subject_id)
    if doors is None or access.store.access_subject(subject_id).validity.problem(at) != EXPIRED:
        return doors
    return frozenset()


def door_access(access: SiteAccess | None, subject_id: str, door: str, at: float) -> dict | None:
    """When the person may open ``door`` (reports): {} without access rules (any time), else
    each granting group's weekly schedule, the site's zone and the person's validity (Unix
    seconds or None); None when no group of theirs opens the door or their validity ended."""
    if access is None or not access.enforced():
        return {}
    rules = access.door_rules(door)
    subject = access.store.access_subject(subject_id)
    groups = sorted(subject.groups & set(rules.grants))
    if not groups or subject.validity.problem(at) == EXPIRED:
        return None
    return {"schedules": {g: rules.grants[g].to_mapping() for g in groups}, "time_zone": rules.tz,
            "valid_from": subject.validity.valid_from, "valid_until": subject.validity.valid_until}
