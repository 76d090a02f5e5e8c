"""Card + PIN with the matcher stopped (docs/door-modes.md): the device cache holds each
eligible person's keyed card claim and PIN verifier, so a right PIN opens, a wrong one is
refused and locks the keypad after the limit, a person who refused face recognition (no
template at all) passes a face door by card + PIN, and a cleared PIN stops working once the
change (a new revision) has reached the cache. The cache holds no card number and no
unkeyed card hash. Real broker, real stores, a real matcher replica."""
from __future__ import annotations

import hashlib
import time

import pytest

from appliance.config.mode_tables import DoorMode
from appliance.edge.door_modes import CARD, PIN, Credential, CredentialDecider, DoorModeSchedule
from appliance.edge.offline import open_door
from appliance.matcher.eligibility import restamp_credentials
from appliance.matching.credentials import hash_pin
from appliance.protocol import messages
from appliance.security.consent import AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.stores.claims import claim_hash, rotate_site_claim_key, site_claim_key
from appliance.stores.identity import FACE_REFUSED_SCOPE
from offkit import OPERATOR, PACK, make_site, offline_config, start_matcher, wait_for

ANSWER_S = 1.0  # offline, the door waits this long for the matcher before its cache decides
LIMIT = 3


@pytest.fixture(scope="module")
def site(tmp_path_factory, config):
    made = make_site(tmp_path_factory.mktemp("pin-site"), config, people=2)
    made.holder = next(iter(made.people))  # card C-0000
    made.data.identity.set_pin_hash(OPERATOR, made.holder, hash_pin("2468"))
    restamp_credentials(made.data, OPERATOR, made.holder)  # what `appliance person credential` does
    made.refuser = new_subject_id()  # refused face recognition: a card and a PIN, no template
    made.data.register_person(OPERATOR, Person(made.refuser, "Refusing Person", AgeBand.ADULT,
                                               Alternative.CARD_AND_PIN, card_no="R-0001"))
    made.data.record_consent(OPERATOR, ConsentRecord(made.refuser, FACE_REFUSED_SCOPE, "v1", time.time(), "R"))
    made.data.identity.set_pin_hash(OPERATOR, made.refuser, hash_pin("864209"))
    restamp_credentials(made.data, OPERATOR, made.refuser)
    yield made
    made.broker.stop()
    made.data.close()


def synced(door, site) -> bool:
    return wait_for(lambda: door.cache.revision == site.data.biometric.revision and door.sync.current.is_set(), 30)


def held(door) -> str:
    """Everything the door's cache holds, as text to search."""
    return repr(door.cache.execute("SELECT * FROM cached").fetchall())


def decider(door, mode: DoorMode) -> CredentialDecider:
    """The door's card and PIN decider in ``mode`` (the matcher stopped: the cache decides)."""
    return CredentialDecider(door.link, door.cache, DoorModeSchedule(mode), pin_attempts=LIMIT,
                             pin_lockout_s=300.0, answer_timeout_s=ANSWER_S, pump=door.pump)


def stopped(matcher) -> None:
    """Stop the replica and close its stores; None, for the variable that held it."""
    matcher.stop()
    matcher.store.close()


def test_offline_card_and_pin_then_a_cleared_pin(site):
    matcher = start_matcher(site)
    door = open_door(site, "door-a", offline_config(mode="local", answer_timeout_ms=int(ANSWER_S * 1000)),
                     threshold=0.4)
    try:
        assert synced(door, site)
        holds = held(door)
        unkeyed = hashlib.sha256(b"appliance/claim/v1|C-0000").hexdigest()
        assert "C-0000" not in holds and unkeyed not in holds
        assert claim_hash("C-0000", site_claim_key(site.data.vault)) in holds
        assert site.refuser in door.cache.subject_ids() and site.refuser not in door.cache.local_view(*PACK)[0]
        assert door.cache.digest() == matcher.revisions.expected_digest("default", "door-a")

        matcher = stopped(matcher)
        keypad = decider(door, DoorMode.CARD_OR_PIN)
        right = keypad.decide(Credential(PIN, "C-0000", "2468"), "door-a")
        assert (right.accepted, right.subject, keypad.last_source) == (True, site.holder, "local")
        for _ in range(LIMIT):
            wrong = keypad.decide(Credential(PIN, "C-0000", "1357"), "door-a")
            assert (wrong.accepted, wrong.reason) == (False, messages.Reason.NO_MATCH)
        locked = keypad.decide(Credential(PIN, "C-0000", "2468"), "door-a")
        assert (locked.accepted, locked.reason) == (False, messages.Reason.LOCKED_OUT)
        face_door = decider(door, DoorMode.FACE)
        refuser = face_door.decide(Credential(PIN, "R-0001", "864209"), "door-a")
        assert (refuser.accepted, refuser.subject, face_door.last_source) == (True, site.refuser, "local")

        matcher = start_matcher(site)
        site.data.identity.set_pin_hash(OPERATOR, site.holder, "")  # cleared centrally: a new revision
        restamp_credentials(site.data, OPERATOR, site.holder)
        site.data.identity.set_pin_hash(OPERATOR, site.refuser, "")  # and theirs: no template, a stamp
        restamp_credentials(site.data, OPERATOR, site.refuser)
        assert synced(door, site)
        matcher = stopped(matcher)
        fresh = decider(door, DoorMode.CARD_OR_PIN)
        cleared = fresh.decide(Credential(PIN, "C-0000", "2468"), "door-a")
        assert (cleared.accepted, cleared.reason, fresh.last_source) == (False, messages.Reason.NO_MATCH, "local")
        gone = fresh.decide(Credential(PIN, "R-0001", "864209"), "door-a")
        assert (gone.accepted, gone.reason) == (False, messages.Reason.NO_MATCH)
    finally:
        door.close()
        if matcher is not None:
            stopped(matcher)


def test_a_rotated_claim_key_reaches_the_door_without_a_restart_and_cards_still_open(site):
    """After a stolen door: ``appliance keys rotate claim`` (here its function, on the site's
    stores while the replica runs). The door is told at once, adopts the new key, empties its
    cache and syncs it again; its claims are keyed by the new key only, and a card still opens
    with the matcher stopped."""
    matcher = start_matcher(site)
    door = open_door(site, "door-a", offline_config(mode="local", answer_timeout_ms=int(ANSWER_S * 1000)),
                     threshold=0.4)
    try:
        assert synced(door, site)
        old = site_claim_key(site.data.vault)
        rotate_site_claim_key(site.data.vault, site.data.biometric)
        new = site_claim_key(site.data.vault)
        assert new != old
        assert wait_for(lambda: door.sync.stats["claim_key_resyncs"] == 1, 30), dict(door.sync.stats)
        assert synced(door, site)
        assert claim_hash("C-0000", new) in held(door) and claim_hash("C-0000", old) not in held(door)
        assert door.cache.digest() == matcher.revisions.expected_digest("default", "door-a")

        matcher = stopped(matcher)
        cards = decider(door, DoorMode.FACE_OR_CARD)
        card = cards.decide(Credential(CARD, "C-0000"), "door-a")
        assert (card.accepted, card.subject, cards.last_source) == (True, site.holder, "local")
    finally:
        door.close()
        if matcher is not None:
            stopped(matcher)
