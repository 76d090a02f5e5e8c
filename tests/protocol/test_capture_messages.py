"""The capture messages (``protocol.capture_messages``) decode strictly, like every message:
what a console may ask of a door, and what a door may answer."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import messages
from appliance.liveness.evidence import Ed25519Signer, sign_summary
from appliance.protocol.capture_messages import (
    CAPTURE_STATUSES, LIVENESS_FAILED, MAX_CAPTURE_FRAMES, CaptureRequest, CaptureResult,
)

UNIT = CaptureResult.pack_vector(np.full(512, 1 / np.sqrt(512), np.float32))
REJECTION = {"capture": 1, "reason": "too_dark", "guidance": "more light on your face"}
EVIDENCE = sign_summary({"live": True, "score": 0.9}, Ed25519Signer.generate("door-a")).as_dict()


def request(**changes) -> CaptureRequest:
    return dataclasses.replace(CaptureRequest(messages.new_id(), "door-a", 3, 30.0, "acct-1", "v1"), **changes)


def result(**changes) -> CaptureResult:
    base = CaptureResult(messages.new_id(), "door-a", "ok", UNIT, "w600k-mbf", "1.0.0", 1, [71.5], 1, [REJECTION],
                         [EVIDENCE])
    return dataclasses.replace(base, **changes)


def refused(message: messages.Message, cls: type[messages.Message]) -> str:
    with pytest.raises(ApplianceError) as error:
        messages.decode(message.encode(), cls)
    assert error.value.code is ErrorCode.MESSAGE_REJECTED
    return error.value.detail


def test_both_round_trip_and_only_when_expected():
    asked, answered = request(), result()
    assert messages.decode(asked.encode(), CaptureRequest) == asked
    assert messages.decode(answered.encode(), CaptureResult) == answered
    np.testing.assert_allclose(answered.vector(), np.full(512, 1 / np.sqrt(512)), rtol=1e-6)
    for message in (asked, answered):  # not in the registry: a matcher refuses them as any other type
        with pytest.raises(ApplianceError, match="unexpected message type"):
            messages.decode(message.encode())
    assert "unexpected message type" in refused(asked, CaptureResult)


@pytest.mark.parametrize(("changes", "detail"), [
    ({"frames": 0}, "frames"), ({"frames": MAX_CAPTURE_FRAMES + 1}, "frames"), ({"frames": 3.0}, "frames"),
    ({"timeout_s": 0.0}, "timeout_s"), ({"timeout_s": 301.0}, "timeout_s"),
    ({"requested_by": ""}, "requested_by"), ({"notice_version": ""}, "notice_version"),
    ({"request_id": "x"}, "32 hex digits"), ({"device_id": "d" * 300}, "longer than"),
])
def test_a_request_out_of_bounds_is_refused(changes, detail):
    assert detail in refused(request(**changes), CaptureRequest)


@pytest.mark.parametrize(("changes", "detail"), [
    ({"status": "done"}, "status"),
    ({"status": "busy"}, "answer with"), ({"status": "refused"}, "answer with"), ({"status": "no_face"}, "answer with"),
    ({"template": "", "used": 1}, "answer with"), ({"used": 0, "quality": []}, "answer with"),
    ({"quality": []}, "quality score"),
    ({"pack_id": ""}, "without its pack"),
    ({"template": CaptureResult.pack_vector(np.ones(512, np.float32))}, "unit length"),
    ({"template": "not base64!"}, "base64"),
    ({"rejections": [REJECTION] * MAX_CAPTURE_FRAMES}, f"more than {MAX_CAPTURE_FRAMES}"),
    ({"rejections": [{**REJECTION, "image": "x.jpg"}]}, "unknown field"),
    ({"rejections": [{"capture": 1, "reason": "too_dark"}]}, "missing field"),
    ({"status": LIVENESS_FAILED}, "answer with"),  # a capture judged not live never carries a template
    ({"liveness": [EVIDENCE, EVIDENCE]}, "2 liveness evidence for 1"),
    ({"liveness": [{**EVIDENCE, "alg": "RSA"}]}, "alg"),
    ({"liveness": [{**EVIDENCE, "image": "x.jpg"}]}, "unknown field"),
    ({"liveness": [{"payload": EVIDENCE["payload"]}]}, "missing field"),
])
def test_an_answer_that_breaks_a_rule_is_refused(changes, detail):
    assert detail in refused(result(**changes), CaptureResult)


def test_every_status_without_a_capture_decodes_without_a_template():
    for status in CAPTURE_STATUSES:
        empty = CaptureResult(messages.new_id(), "door-a", status)
        assert messages.decode(empty.encode(), CaptureResult).vector() is None


def test_a_liveness_failed_answer_carries_the_failing_evidence_only():
    failed = CaptureResult(messages.new_id(), "door-a", LIVENESS_FAILED, attempts=1, liveness=[EVIDENCE])
    assert messages.decode(failed.encode(), CaptureResult) == failed
    assert "2 liveness evidence for 0" in refused(dataclasses.replace(failed, liveness=[EVIDENCE] * 2),
                                                  CaptureResult)
    assert "1 liveness evidence for 0" in refused(dataclasses.replace(failed, status="no_face"), CaptureResult)


def test_an_unknown_field_on_the_wire_is_refused():
    body = json.loads(request().encode())
    body["image"] = "base64 of a photo"
    with pytest.raises(ApplianceError, match="unknown field 'image'"):
        messages.decode(json.dumps(body).encode(), CaptureRequest)
