"""Strict decoding: every malformed message is refused with MESSAGE_REJECTED naming what is
wrong, and no input crashes the decoder."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import messages

RID = "0123456789abcdef0123456789abcdef"
TEMPLATE = messages.MatchRequest.pack_vector(np.array([0.6, 0.8, 0.0, 0.0], dtype=np.float32))
REQUEST = {"v": 1, "type": "match_request", "request_id": RID, "device_id": "door-1", "mode": "verify",
           "template_b64": TEMPLATE, "captured_at": 1.5, "claim": "card:42", "attempt": 1, "liveness": {}}
DELTA = {"v": 1, "type": "delta", "request_id": RID, "kind": "changes", "base": 3, "revision": 7, "head": 9,
         "upserts": [{"s": "subj-1", "r": 4, "t": TEMPLATE, "n": "A**", "c": ""}],
         "tombstones": [{"s": "subj-2", "r": 5}]}


def rejected(body: dict | bytes, expect: type[messages.Message] | None = None) -> str:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    with pytest.raises(ApplianceError) as refused:
        messages.decode(data, expect)
    assert refused.value.code is ErrorCode.MESSAGE_REJECTED
    return refused.value.detail


def test_the_samples_are_valid():
    assert messages.decode(json.dumps(REQUEST).encode()).claim == "card:42"
    assert messages.decode(json.dumps(DELTA).encode()).revision == 7


@pytest.mark.parametrize("change, detail", [
    ({"request_id": "0123"}, "request_id is not 32 hex digits"),
    ({"request_id": RID.upper()}, "request_id is not 32 hex digits"),
    ({"request_id": 7}, "request_id: expected a string"),
    ({"device_id": "d" * 257}, "device_id: longer than 256"),
    ({"claim": "c" * 257}, "claim: longer than 256"),
    ({"mode": "guess"}, "mode: input should be 'verify' or 'identify'"),
    ({"captured_at": "1.5"}, "captured_at: expected a number"),
    ({"captured_at": True}, "captured_at: expected a number"),
    ({"attempt": True}, "attempt: expected an integer"),
    ({"attempt": 1.0}, "attempt: expected an integer"),
    ({"liveness": []}, "liveness: expected an object"),
    ({"surprise": 1}, "unknown field 'surprise'"),
    ({"claim": ""}, "verify needs a claim"),
    ({"template_b64": "not base64!"}, "template is not base64 float32"),
    ({"template_b64": "AACAPwAA"}, "template is not base64 float32"),  # 6 bytes: not whole float32s
    ({"template_b64": messages.MatchRequest.pack_vector(np.ones(4))}, "template is not unit length"),
    ({"template_b64": messages.MatchRequest.pack_vector(np.array([np.nan, 1.0]))}, "template size or values"),
    ({"template_b64": messages.MatchRequest.pack_vector(np.ones(2049) / np.sqrt(2049))}, "template size or values"),
    ({"template_b64": messages.MatchRequest.pack_vector(np.array([np.inf, 0.0]))}, "template size or values"),
    ({"template_b64": messages.MatchRequest.pack_vector(np.array([-np.inf, np.inf]))}, "template size or values"),
    ({"template_b64": ""}, "template size or values"),
    # finite, but its square overflows float32: not unit length, as before one dot product checked both
    ({"template_b64": messages.MatchRequest.pack_vector(np.array([3e38, 0.0]))}, "template is not unit length"),
])
def test_a_bad_match_request_names_the_field(change, detail):
    assert detail in rejected({**REQUEST, **change})


def test_a_missing_field_is_named():
    body = dict(REQUEST)
    del body["device_id"]
    assert rejected(body) == "missing field 'device_id'"


@pytest.mark.parametrize("body, detail", [
    ({"v": 1, "type": "decision", "request_id": RID, "accepted": True, "reason": "no_match"},
     "an accepted decision with reason 'no_match'"),
    ({"v": 1, "type": "decision", "request_id": RID, "accepted": False, "reason": "maybe"}, "reason: input should be"),
    ({"v": 1, "type": "decision", "request_id": RID, "accepted": 1, "reason": "match"},
     "accepted: expected true/false"),
    ({"v": 1, "type": "event", "event_id": "x", "device_id": "d", "kind": "pass", "at": 1.0},
     "event_id is not 32 hex digits"),
    ({"v": 1, "type": "alarm", "alarm_id": RID, "device_id": "d", "kind": "k" * 300, "at": 1.0},
     "kind: longer than 256"),
    ({"v": 1, "type": "telemetry", "device_id": "d", "at": 1.0, "uptime_s": 1.0, "frames_per_s": 1.0,
      "stage_latency_ms": {"x": "slow"}, "queue_depths": {}, "pack": "p"}, "stage_latency_ms.x: expected a number"),
    ({"v": 1, "type": "sync_request", "request_id": RID, "device_id": "d", "revision": -1}, "revision"),
    ({"v": 1, "type": "sync_request", "request_id": RID, "device_id": "d", "revision": 1, "digest": "ab"}, "digest"),
    ({"v": 1, "type": "sync_request", "request_id": RID, "device_id": "d", "revision": 1, "snapshot_id": "s"},
     "snapshot_id"),
    ({"v": 1, "type": "sync_ack", "device_id": "d", "revision": -1, "at": 1.0}, "revision"),
    ({"v": 1, "type": "outbox_ack", "ids": [RID, "nope"]}, "ids[1] is not 32 hex digits"),
    ({"v": 1, "type": "enrollment_event", "event_id": RID, "action": "renamed", "subject_ref": "r",
      "display_name": "n", "revision": 1, "at": 1.0}, "action: input should be 'enrolled' or 'deleted'"),
])
def test_other_bad_messages_name_the_field(body, detail):
    assert detail in rejected(body)


@pytest.mark.parametrize("change, detail", [
    ({"kind": "everything"}, "kind: input should be"),
    ({"base": -1}, "base: input should be greater than or equal to 0"),
    ({"revision": 2}, "delta revisions invalid"),
    ({"kind": "snapshot"}, "snapshot without an id"),
    ({"upserts": [{"s": "subj-1", "r": 4, "t": TEMPLATE, "n": "A**"}]}, "missing field 'upserts[0].c'"),
    ({"upserts": [{"s": "subj 1", "r": 4, "t": TEMPLATE, "n": "A**", "c": ""}]}, "upserts[0].s"),
    ({"upserts": [{"s": "subj-1", "r": True, "t": TEMPLATE, "n": "A**", "c": ""}]},
     "upserts[0].r: expected an integer"),
    ({"upserts": [{"s": "subj-1", "r": 4, "t": TEMPLATE, "n": "A" * 257, "c": ""}]}, "upserts[0].n: longer than 256"),
    ({"upserts": [{"s": "subj-1", "r": 4, "t": TEMPLATE, "n": "A**", "c": "abc"}]}, "upserts[0].c"),
    ({"upserts": [{"s": "subj-1", "r": 4, "t": "%%", "n": "A**", "c": ""}]}, "delta template is not base64 float32"),
    ({"upserts": [{"s": "subj-1", "r": 4, "t": messages.MatchRequest.pack_vector(np.array([1.0, np.nan])), "n": "A**",
                   "c": ""}]}, "delta template size or values invalid"),
    ({"upserts": [3]}, "upserts[0]: expected an object"),
    ({"tombstones": [{"s": "subj-2", "r": 5, "t": TEMPLATE}]}, "unknown field 'tombstones[0].t'"),
])
def test_a_bad_delta_names_the_entry(change, detail):
    assert detail in rejected({**DELTA, **change})


@pytest.mark.parametrize("data, detail", [
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b'{"v": 1, "type": "sync_ack", "x": "\xff"}', "not UTF-8 JSON"),  # invalid UTF-8 inside a string
    (b"\xef\xbb\xbf" + json.dumps(REQUEST).encode(), "not UTF-8 JSON"),  # a byte order mark
    (json.dumps({**REQUEST, "claim": "\ud800"}).encode(), "not UTF-8 JSON"),  # a lone surrogate, escaped
    (json.dumps(REQUEST).encode() + b" {}", "not UTF-8 JSON"),  # anything after the object
    (b'{"v": 1, "type": "sync_ack", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "not UTF-8 JSON"),  # nesting
    (b"[1, 2]", "not a JSON object"),
    (b'{"v": 2, "type": "sync_ack"}', "unknown protocol version"),
    (b'{"v": 1, "type": "hello"}', "unexpected message type"),
    (b'{"v": 1, "type": ["decision"]}', "unexpected message type"),  # an unhashable type is no type either
    (b'{"v": 1, "type": {}}', "unexpected message type"),
    (b'{"v": 1}' + b" " * messages.MAX_MESSAGE_BYTES, "over the"),
])
def test_envelope_level_refusals(data, detail):
    assert detail in rejected(data)


def test_the_expected_type_is_enforced():
    assert rejected(json.dumps(REQUEST).encode(), messages.Decision) == "unexpected message type"


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(messages.MESSAGE_TYPES)), fields=st.dictionaries(
    st.sampled_from(["request_id", "device_id", "mode", "template_b64", "captured_at", "claim", "attempt",
                     "liveness", "accepted", "reason", "event_id", "alarm_id", "kind", "at", "details", "revision",
                     "ids", "upserts", "tombstones", "base", "head", "digest", "x"]), JSON, max_size=8))
def test_arbitrary_json_is_accepted_or_refused_never_a_crash(kind, fields):
    data = json.dumps({"v": 1, "type": kind, **fields}).encode()
    try:
        message = messages.decode(data)
    except ApplianceError as refused:
        assert refused.code is ErrorCode.MESSAGE_REJECTED
    else:
        assert messages.decode(message.encode()) == message


def test_a_delta_template_need_not_be_unit_length_only_finite():
    huge = messages.MatchRequest.pack_vector(np.array([3e38, 3e38]))  # finite; its square overflows float32
    body = {**DELTA, "upserts": [{"s": "subj-1", "r": 4, "t": huge, "n": "A**", "c": ""}]}
    assert messages.decode(json.dumps(body).encode()).upserts[0]["t"] == huge
