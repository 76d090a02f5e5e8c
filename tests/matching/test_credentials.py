"""The card/PIN rules shared by the matcher and the door: PIN hashing, what each mode lets
through, the refusal of face recognition, and the attempt limits."""
from __future__ import annotations

import pytest

from appliance.config.mode_tables import DoorMode
from appliance.errors import ApplianceError
from appliance.matching.credentials import (
    CARD, PIN, Credential, CredentialJudge, Holder, allowed_for, hash_pin, pin_matches,
)
from appliance.protocol.messages import Reason


def test_a_pin_is_stored_salted_and_checked_only_against_itself():
    first, second = hash_pin("123456"), hash_pin("123456")
    assert first != second and "123456" not in first  # a new salt each time, never the PIN
    assert first.startswith("scrypt$16384$8$1$")
    assert pin_matches("123456", first) and pin_matches("123456", second)
    assert not pin_matches("123457", first) and not pin_matches("123456", "") and not pin_matches("1", "x$y")


@pytest.mark.parametrize("kind, card, pin", [(PIN, "C-1", "12"), (PIN, "C-1", "12a4"), (CARD, "", ""),
                                             (CARD, "C 1", ""), (CARD, "C-1", "1234"), ("qr", "C-1", "")])
def test_malformed_credentials_are_refused(kind, card, pin):
    with pytest.raises(ApplianceError):
        Credential(kind, card, pin)


def test_a_person_who_refused_face_recognition_may_use_a_pin_at_every_door():
    assert not allowed_for(DoorMode.FACE, PIN, face_refused=False)
    assert allowed_for(DoorMode.FACE, PIN, face_refused=True)
    assert allowed_for(DoorMode.CARD_AND_FACE, PIN, face_refused=True)
    assert not allowed_for(DoorMode.FACE, CARD, face_refused=True)  # a card alone stays weaker than a face


def test_the_judge_applies_mode_pin_and_limits():
    judge = CredentialJudge(attempts=3, lockout_s=30.0)
    alice = Holder("s-alice", hash_pin("2468"))
    assert judge.judge("door-a", DoorMode.CARD_OR_PIN, Credential(PIN, "C-1", "2468"), alice, 0.0).accepted
    assert judge.judge("door-a", DoorMode.FACE, Credential(CARD, "C-1"), alice, 0.0).reason == Reason.BAD_REQUEST
    for _ in range(3):
        verdict = judge.judge("door-a", DoorMode.CARD_OR_PIN, Credential(PIN, "C-1", "1111"), alice, 1.0)
        assert verdict.reason == Reason.NO_MATCH
    locked = judge.judge("door-a", DoorMode.CARD_OR_PIN, Credential(PIN, "C-1", "2468"), alice, 2.0)
    assert (locked.reason, locked.retry_after_s) == (Reason.LOCKED_OUT, 29.0)  # even the right PIN waits
    bob = Holder("s-bob", hash_pin("1357"))  # the keypad of door-a is locked for every PIN
    assert judge.judge("door-a", DoorMode.CARD_OR_PIN, Credential(PIN, "C-2", "1357"), bob, 2.0).reason \
        == Reason.LOCKED_OUT
    assert judge.judge("door-b", DoorMode.CARD_OR_PIN, Credential(PIN, "C-2", "1357"), bob, 2.0).accepted
    assert judge.judge("door-a", DoorMode.CARD_OR_PIN, Credential(PIN, "C-1", "2468"), alice, 31.0).accepted
    no_pin = Holder("s-carol")
    assert judge.judge("door-b", DoorMode.CARD_OR_PIN, Credential(PIN, "C-3", "1357"), no_pin, 40.0).reason \
        == Reason.NO_MATCH
