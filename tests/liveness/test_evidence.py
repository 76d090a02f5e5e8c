"""Signed evidence: canonical bytes, Ed25519 signature, tamper detection."""
from __future__ import annotations

import dataclasses
import math

import pytest

from appliance.errors import ApplianceError
from appliance.liveness.evidence import Ed25519Signer, canonical_json, sign_summary, verify


def test_canonical_json_is_order_independent_and_finite():
    a = canonical_json({"b": 1.234567, "a": [1, float("nan")], "c": {"y": 2, "x": math.inf}})
    b = canonical_json({"c": {"x": math.inf, "y": 2}, "a": [1, float("nan")], "b": 1.234567})
    assert a == b == b'{"a":[1,null],"b":1.2346,"c":{"x":null,"y":2}}'


def test_sign_and_verify_and_tamper():
    signer = Ed25519Signer.generate("door-7")
    evidence = sign_summary({"live": True, "score": 0.93, "cues": {"periodicity": 0.8}}, signer)
    assert verify(evidence, signer.public_key_bytes())["score"] == 0.93
    assert evidence.as_dict()["alg"] == "Ed25519"
    forged = dataclasses.replace(evidence, payload=evidence.payload.replace(b"true", b"fals"))
    with pytest.raises(ApplianceError):
        verify(forged, signer.public_key_bytes())
    with pytest.raises(ApplianceError):
        verify(evidence, Ed25519Signer.generate().public_key_bytes())
