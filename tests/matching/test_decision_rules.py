"""MatchEngine, pure: thresholds, 1:1 and 1:N, unknown claims, LOCKED_OUT and retry_after.
The same engine decides at the matcher and in a door's cache."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from appliance.matching import FailureTracker, Gallery, MatchEngine, Verdict
from appliance.protocol.messages import Reason
from appliance.vision.templates import Template, normalise

PACK = ("pack", "1")
DIM = 32
THRESHOLD = 0.5
CARDS = {"C-ANA": "ana", "C-BOB": "bob", "C-GONE": "gone"}  # "gone": a card whose subject has no template


def unit(seed: int) -> np.ndarray:
    return normalise(np.random.default_rng(seed).normal(size=DIM)).astype(np.float32)


def probe(vector: np.ndarray) -> Template:
    return Template(vector, *PACK)


@pytest.fixture
def engine() -> MatchEngine:
    gallery = Gallery(*PACK, DIM)
    gallery.upsert("ana", probe(unit(1)))
    gallery.upsert("bob", probe(unit(2)))
    return MatchEngine(gallery, THRESHOLD, CARDS.get)


def test_a_verdict_carries_no_score():
    assert {f.name for f in dataclasses.fields(Verdict)} == {"accepted", "reason", "subject_id", "retry_after_s"}


def test_identify_accepts_the_best_match_above_the_threshold(engine):
    verdict = engine.decide("door", probe(unit(1)), "", 0.0)
    assert verdict == Verdict(True, Reason.MATCH, "ana")
    stranger = engine.decide("door", probe(unit(99)), "", 0.0)
    assert stranger == Verdict(False, Reason.NO_MATCH, "")


def test_the_threshold_itself_is_accepted(engine):
    mix = normalise(unit(1) + unit(3)).astype(np.float32)
    at = float(mix @ unit(1))
    assert MatchEngine(engine.gallery, at, CARDS.get).decide("door", probe(mix), "", 0.0).accepted
    assert not MatchEngine(engine.gallery, at + 1e-4, CARDS.get).decide("door", probe(mix), "", 0.0).accepted


def test_verify_compares_only_with_the_claimed_subject(engine):
    assert engine.decide("door", probe(unit(2)), "C-BOB", 0.0) == Verdict(True, Reason.MATCH, "bob")
    # bob's face with ana's card: a no, although bob is enrolled
    assert engine.decide("door", probe(unit(2)), "C-ANA", 0.0) == Verdict(False, Reason.NO_MATCH, "")


def test_an_unknown_claim_or_one_without_a_template_is_unknown_claim(engine):
    assert engine.decide("door", probe(unit(1)), "C-NOBODY", 0.0).reason == Reason.UNKNOWN_CLAIM
    assert engine.decide("door", probe(unit(1)), "C-GONE", 0.0).reason == Reason.UNKNOWN_CLAIM


def test_five_failures_lock_the_device_out_with_the_time_left(engine):
    for _ in range(5):
        assert engine.decide("door", probe(unit(99)), "", 100.0).reason == Reason.NO_MATCH
    locked = engine.decide("door", probe(unit(1)), "", 110.0)  # even the right face now
    assert locked == Verdict(False, Reason.LOCKED_OUT, retry_after_s=pytest.approx(20.0))
    assert engine.decide("other-door", probe(unit(1)), "", 110.0).accepted  # only that device
    assert engine.decide("door", probe(unit(1)), "", 130.0).accepted  # after the back-off
    assert engine.decide("door", probe(unit(99)), "", 131.0).reason == Reason.NO_MATCH  # the success cleared it


def test_a_locked_out_answer_is_not_a_further_failure(engine):
    for _ in range(5):
        engine.decide("door", probe(unit(99)), "", 0.0)
    for now in (1.0, 2.0, 3.0):
        engine.decide("door", probe(unit(99)), "", now)
    assert engine.decide("door", probe(unit(1)), "", 30.0).accepted


def test_failures_against_a_claimed_identity_lock_it_on_every_device(engine):
    for index in range(5):  # someone tries ana's card at five doors
        assert engine.decide(f"door-{index}", probe(unit(99)), "C-ANA", 0.0).reason == Reason.NO_MATCH
    locked = engine.decide("door-new", probe(unit(1)), "C-ANA", 5.0)
    assert locked.reason == Reason.LOCKED_OUT and locked.retry_after_s == pytest.approx(25.0)
    assert engine.decide("door-new", probe(unit(2)), "C-BOB", 5.0).accepted  # other identities are not locked
    assert engine.decide("door-new", probe(unit(1)), "", 5.0).accepted  # nor that door for 1:N


def test_the_tracker_can_be_shared_or_lifted(engine):
    lifted = MatchEngine(engine.gallery, THRESHOLD, CARDS.get, FailureTracker(limit=10**9))
    for _ in range(50):
        assert lifted.decide("bench", probe(unit(99)), "", 0.0).reason == Reason.NO_MATCH
