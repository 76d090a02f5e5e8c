"""The second liveness judgement inside an authenticated request: the envelope proved the
device, so the evidence's signature is not checked again; every other rule still is."""
from __future__ import annotations

import time

from appliance.liveness.evidence import Ed25519Signer, sign_summary
from appliance.matcher.liveness import second_liveness_judgement
from appliance.protocol.directory import NodeDirectory
from appliance.security.envelope import NodeKeys

LIVE = {"live": True, "attack": False, "level": "passive", "score": 0.9, "threshold": 0.6, "reasons": [],
        "cues": {}, "motion": None, "challenge": None, "frames": 3}


def test_an_authenticated_origin_skips_only_the_signature(tmp_path):
    directory = NodeDirectory.load(tmp_path / "directory.json")
    door_a, door_b = NodeKeys.generate("door-a"), NodeKeys.generate("door-b")
    directory.add(door_a)
    directory.add(door_b)
    now = time.time()
    summary = {"started_at": now - 0.5, "decided_at": now, "calibration": "c1", **LIVE}
    other = sign_summary(summary, Ed25519Signer(door_b.signing.private_bytes_raw(), "door-b")).as_dict()
    judge = second_liveness_judgement("passive", directory)
    assert not judge("door-a", other)  # no envelope vouches for the origin: the signature decides
    assert judge("door-a", other, origin_authenticated=True)  # door-a's envelope did
    own = Ed25519Signer(door_a.signing.private_bytes_raw(), "door-a")
    for refused in ({**summary, "decided_at": now - 3600}, {**summary, "live": False}, {**summary, "score": 0.5}):
        assert not judge("door-a", sign_summary(refused, own).as_dict(), origin_authenticated=True)
    for malformed in ("bm90IGpzb24=", "WzFd"):  # "not json", "[1]"
        assert not judge("door-a", {**sign_summary(summary, own).as_dict(), "payload": malformed},
                         origin_authenticated=True)
