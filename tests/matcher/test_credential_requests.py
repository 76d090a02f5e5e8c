"""Card and PIN requests at the matcher, on real central stores: the card's holder from the
identity registry, the PIN against its scrypt hash, the door mode, a person who refused face
recognition, the attempt limit per door keypad, idempotent retries and what is refused."""
from __future__ import annotations

import hashlib
import re
import time
from collections import Counter

import pytest

from appliance.config.mode_tables import DoorMode
from appliance.matcher.credential_requests import CredentialRequestHandler
from appliance.matcher.device_limits import Limits
from appliance.matcher.gate import Gate
from appliance.matcher.replica_io import Auditor
from appliance.matching.credentials import CredentialJudge, hash_pin
from appliance.protocol import messages, topics
from appliance.protocol.credential_messages import CredentialRequest
from appliance.security.consent import AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.envelope import MessageType
from appliance.security.roles import Principal, Role
from appliance.stores.identity import FACE_REFUSED_SCOPE
from matcherkit import OPERATOR, FakeLog

MATCHER = Principal("matcher-1", Role.OPERATOR, device="matcher-1")


@pytest.fixture
def handler(node):
    audit = FakeLog()
    stats: Counter[str] = Counter()
    gate = Gate("matcher-1", Limits(), lambda *entry: audit.append(MATCHER, *entry[1:]), stats)
    made = CredentialRequestHandler("matcher-1", node.keys, node.directory, node.data.identity, MATCHER,
                                    node.courier(), Auditor("matcher-1", audit), stats, gate, CredentialJudge(3, 60.0))
    made.audit_log = audit
    return made


def ask(node, handler, mode: DoorMode, kind: str, card: str, pin: str = "", device: str = "door-a",
        request_id: str | None = None) -> messages.Decision:
    request = CredentialRequest(request_id or messages.new_id(), device, mode.value, kind, card, time.time(), pin)
    before = len(node.broker.sent)
    handler.handle(node.sealed_by(device, request, MessageType.PROBE, kind=topics.CREDENTIAL))
    answers = node.broker.sent[before:]
    assert len(answers) == 1 and answers[0].topic == topics.device_topic(device, topics.DECISION)
    return node.opened_by(device, answers[0], MessageType.DECISION)


def refuser(node, name: str, card: str) -> str:
    subject = new_subject_id()
    node.data.register_person(OPERATOR, Person(subject, name, AgeBand.ADULT, Alternative.CARD_AND_PIN, card_no=card))
    node.data.record_consent(OPERATOR, ConsentRecord(subject, FACE_REFUSED_SCOPE, "v1", time.time(), name))
    return subject


def test_a_card_opens_a_card_door_with_the_masked_name_and_never_a_score(node, handler):
    subject, _ = node.enroll("Alice Zhang", card="C-1")
    decision = ask(node, handler, DoorMode.CARD_OR_PIN, "card", "C-1")
    assert (decision.accepted, decision.reason, decision.subject) == (True, messages.Reason.MATCH, subject)
    assert decision.display_name and decision.display_name != "Alice Zhang"
    assert ask(node, handler, DoorMode.FACE_OR_CARD, "card", "C-1").accepted
    refused = ask(node, handler, DoorMode.FACE, "card", "C-1")  # a face door: not with a card alone
    assert (refused.accepted, refused.reason, refused.display_name) == (False, messages.Reason.BAD_REQUEST, "")
    assert ask(node, handler, DoorMode.CARD_OR_PIN, "card", "C-404").reason == messages.Reason.UNKNOWN_CLAIM
    audited = [entry for entry in handler.audit_log.entries if entry[2] == "decision.card"]
    assert audited and all("C-1" not in str(entry) and "C-404" not in str(entry) for entry in audited)
    # the reason, the door's mode and the request id the door sent (its own log has the same id)
    assert all(re.fullmatch(r"[a-z_]+; [a-z_|]+; request [0-9a-f]{32}", entry[5]) for entry in audited), audited


def test_a_wrong_pin_is_refused_and_the_keypad_locks_after_the_limit(node, handler):
    subject, _ = node.enroll("Bob Li", card="C-2")
    node.data.identity.set_pin_hash(OPERATOR, subject, hash_pin("2468"))
    for _ in range(3):
        wrong = ask(node, handler, DoorMode.CARD_OR_PIN, "pin", "C-2", "1111")
        assert (wrong.accepted, wrong.reason) == (False, messages.Reason.NO_MATCH)
    locked = ask(node, handler, DoorMode.CARD_OR_PIN, "pin", "C-2", "2468")
    assert (locked.accepted, locked.reason) == (False, messages.Reason.LOCKED_OUT) and locked.retry_after_s > 0
    assert ask(node, handler, DoorMode.CARD_OR_PIN, "pin", "C-2", "2468", device="door-b").reason \
        == messages.Reason.LOCKED_OUT  # the card itself is locked too, at every door
    handler.judge.tracker.clear("card:" + hashlib.sha256(b"C-2").hexdigest())  # an operator unlocks it
    assert ask(node, handler, DoorMode.CARD_OR_PIN, "pin", "C-2", "2468", device="door-b").accepted


def test_a_person_who_refused_face_recognition_passes_a_face_door_by_card_and_pin(node, handler):
    subject = refuser(node, "Carol Wang", "C-3")
    node.data.identity.set_pin_hash(OPERATOR, subject, hash_pin("97531"))
    for mode in (DoorMode.FACE, DoorMode.CARD_AND_FACE, DoorMode.CARD_OR_PIN):
        decision = ask(node, handler, mode, "pin", "C-3", "97531")
        assert (decision.accepted, decision.subject) == (True, subject), mode
    assert ask(node, handler, DoorMode.FACE, "card", "C-3").reason == messages.Reason.BAD_REQUEST
    other, _ = node.enroll("Dan Chen", card="C-4")  # not a refuser: a face door wants the face
    node.data.identity.set_pin_hash(OPERATOR, other, hash_pin("1234"))
    assert ask(node, handler, DoorMode.FACE, "pin", "C-4", "1234").reason == messages.Reason.BAD_REQUEST


def test_a_retry_gets_the_same_answer_once_and_a_forged_device_id_is_refused(node, handler):
    node.enroll("Erin Xu", card="C-5")
    request_id = messages.new_id()
    first = ask(node, handler, DoorMode.CARD_OR_PIN, "card", "C-5", request_id=request_id)
    again = ask(node, handler, DoorMode.CARD_OR_PIN, "card", "C-5", request_id=request_id)
    assert first == again and handler.stats["credential_retries"] == 1
    assert handler.stats["credential_accepted"] == 1
    forged = CredentialRequest(messages.new_id(), "door-b", "card|pin", "card", "C-5", time.time())
    before = len(node.broker.sent)
    handler.handle(node.sealed_by("door-a", forged, MessageType.PROBE, kind=topics.CREDENTIAL))
    assert len(node.broker.sent) == before and handler.stats["rejected:malformed"] == 1
