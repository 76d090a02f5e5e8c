"""The matcher's second liveness judgement on signed device evidence (no images)."""
from __future__ import annotations

import time

from appliance.liveness.evidence import Ed25519Signer, sign_summary
from appliance.matcher.liveness import second_liveness_judgement
from appliance.site import Site

LIVE = {"live": True, "attack": False, "level": "passive", "score": 0.9, "threshold": 0.6, "reasons": [],
        "cues": {}, "motion": None, "challenge": None, "frames": 3}


def test_evidence_must_be_signed_by_the_device_fresh_and_meet_the_policy(tmp_path):
    site = Site(tmp_path)
    site.provision(("door-a", "door-b"))
    now = time.time()
    own = Ed25519Signer(site.device_keys("door-a").signing.private_bytes_raw(), "door-a")
    other = Ed25519Signer(site.device_keys("door-b").signing.private_bytes_raw(), "door-b")
    summary = {"started_at": now - 0.5, "decided_at": now, "calibration": "c1", **LIVE}
    judge = second_liveness_judgement("passive", site.directory)
    assert judge("door-a", sign_summary(summary, own).as_dict())
    assert not judge("door-a", sign_summary(summary, other).as_dict())  # door-b's key for door-a
    assert not judge("door-a", {**sign_summary(summary, own).as_dict(), "payload": "bm90IGpzb24="})
    assert not judge("door-a", {"live": True})  # unsigned
    assert not judge("door-a", sign_summary({**summary, "decided_at": now - 3600}, own).as_dict())  # stale
    assert not judge("door-a", sign_summary({**summary, "live": False}, own).as_dict())
    assert not judge("door-a", sign_summary({**summary, "score": 0.5}, own).as_dict())  # verdict not supported
    stricter = second_liveness_judgement("passive+motion", site.directory)
    assert not stricter("door-a", sign_summary(summary, own).as_dict())  # weaker than the site policy
    assert second_liveness_judgement("off", site.directory)("door-a", {})
