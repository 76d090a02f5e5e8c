"""Card and PIN at a door, on a real broker with real stores and a real matcher replica: in
``card|pin`` mode a card opens centrally and, with the matcher stopped, from the device cache;
a wrong PIN is refused and locks after the limit; a person who refused face recognition passes
by card and PIN without any face pass; ``card+face`` refuses a face that is not the card's."""
from __future__ import annotations

import time

import pytest

from appliance.config.mode_tables import DoorMode
from appliance.edge.door_modes import CARD, PIN, Credential, CredentialDecider, DoorModeSchedule, offers_face
from appliance.edge.offline import open_door
from appliance.matching.credentials import hash_pin
from appliance.protocol import messages
from appliance.security.consent import AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.stores.identity import FACE_REFUSED_SCOPE
from offkit import OPERATOR, PACK, make_site, offline_config, probe_of, request, start_matcher, wait_for

ANSWER_S = 3.0  # the matcher's answer on a loaded test machine; offline the door waits no longer


@pytest.fixture(scope="module")
def site(tmp_path_factory, config):
    made = make_site(tmp_path_factory.mktemp("credential-site"), config, people=3)
    made.refuser = new_subject_id()  # refused face recognition: a card and a PIN, no template
    made.data.register_person(OPERATOR, Person(made.refuser, "Refusing Person", AgeBand.ADULT,
                                               Alternative.CARD_AND_PIN, card_no="R-0001"))
    made.data.record_consent(OPERATOR, ConsentRecord(made.refuser, FACE_REFUSED_SCOPE, "v1", time.time(), "R"))
    made.data.identity.set_pin_hash(OPERATOR, made.refuser, hash_pin("864209"))
    first = next(iter(made.people))
    made.data.identity.set_pin_hash(OPERATOR, first, hash_pin("2468"))
    yield made
    made.broker.stop()
    made.data.close()


def credential_decider(door, mode: DoorMode) -> CredentialDecider:
    return CredentialDecider(door.link, door.cache, DoorModeSchedule(mode), pin_attempts=3, pin_lockout_s=300.0,
                             answer_timeout_s=ANSWER_S, pump=door.pump)


def test_card_or_pin_mode_centrally_then_offline(site):
    holder = next(iter(site.people))
    matcher = start_matcher(site)
    door = open_door(site, "door-a", offline_config(mode="central", answer_timeout_ms=int(ANSWER_S * 1000)),
                     threshold=0.4)
    try:
        assert door.sync.wait_current(20)
        cards = credential_decider(door, DoorMode.CARD_OR_PIN)
        assert not offers_face(cards.mode_now())  # card|pin: the door never prompts for a face
        central = cards.decide(Credential(CARD, "C-0000"), "door-a")
        assert (central.accepted, central.subject, cards.last_source) == (True, holder, "central")
        assert central.display_name.startswith("P")
        assert cards.decide(Credential(PIN, "C-0000", "2468"), "door-a").accepted
        for _ in range(3):
            wrong = cards.decide(Credential(PIN, "C-0000", "1357"), "door-a")
            assert (wrong.accepted, wrong.reason) == (False, messages.Reason.NO_MATCH)
        locked = cards.decide(Credential(PIN, "C-0000", "2468"), "door-a")
        assert (locked.accepted, locked.reason) == (False, messages.Reason.LOCKED_OUT)
        # the matcher's own audit log commits its decision entries in groups (within 0.1 s)
        assert wait_for(lambda: any(e.action == "decision.pin" and e.result == "fail"
                                    for e in site.data.audit.entries()))

        matcher.stop()
        matcher.store.close()
        matcher = None
        queued = door.outbox.depth()
        offline = cards.decide(Credential(CARD, "C-0001"), "door-a")
        assert (offline.accepted, cards.last_source) == (True, "local")
        assert offline.subject == list(site.people)[1]
        assert door.outbox.depth() == queued + 1  # the local decision waits in the outbox for the matcher
        start = time.monotonic()  # the matcher is known silent now: the next cards wait for nothing
        assert cards.decide(Credential(CARD, "X-9999"), "door-a").reason == messages.Reason.UNKNOWN_CLAIM
        pin = cards.decide(Credential(PIN, "C-0001", "2468"), "door-a")  # the cache checks PINs too: none set
        assert (pin.accepted, pin.reason) == (False, messages.Reason.NO_MATCH)
        assert time.monotonic() - start < ANSWER_S and cards.stats["matcher_silent"] == 2

        matcher = start_matcher(site)  # back: the outbox drains, the matcher records the local decisions
        assert wait_for(lambda: door.outbox.depth() == 0, 40)
        assert wait_for(lambda: not door.link.matcher_silent, 20)  # the sync client's ask was answered
        again = cards.decide(Credential(CARD, "C-0001"), "door-a")
        assert (again.accepted, cards.last_source) == (True, "central")
    finally:
        door.close()
        if matcher is not None:
            matcher.stop()
            matcher.store.close()


def test_face_refusal_and_card_plus_face(site):
    alice, bob = list(site.people)[:2]
    matcher = start_matcher(site)
    door = open_door(site, "door-b", offline_config(mode="central", answer_timeout_ms=int(ANSWER_S * 1000)),
                     threshold=0.4)
    try:
        assert door.sync.wait_current(20)
        face_door = credential_decider(door, DoorMode.FACE)
        passed = face_door.decide(Credential(PIN, "R-0001", "864209"), "door-b")  # no face pass at all
        assert (passed.accepted, passed.subject) == (True, site.refuser)
        assert site.refuser not in door.cache.subject_ids()  # no template of theirs anywhere near the door
        assert face_door.decide(Credential(CARD, "R-0001"), "door-b").reason == messages.Reason.BAD_REQUEST

        # card + face: the card names Alice; Bob's face is refused, Alice's accepted (1:1)
        refused = door.decider.request(request("door-b", probe_of(site.people[bob], site.rng), claim="C-0000"), PACK)
        assert (refused.accepted, refused.reason) == (False, messages.Reason.NO_MATCH)
        accepted = door.decider.request(request("door-b", probe_of(site.people[alice], site.rng), claim="C-0000"),
                                        PACK)
        assert (accepted.accepted, accepted.subject) == (True, alice)
    finally:
        door.close()
        matcher.stop()
        matcher.store.close()
