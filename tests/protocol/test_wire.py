"""The wire format: fixed messages encode to the bytes they encoded to before the validation
moved onto the fields, and every message type survives encode -> decode unchanged."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from appliance.protocol import messages

RID = "0123456789abcdef0123456789abcdef"
TEMPLATE = messages.MatchRequest.pack_vector(np.array([0.6, 0.8, 0.0, 0.0], dtype=np.float32))

# (message, its bytes as encoded by the hand-validated module this replaced)
WIRE = [
    (messages.MatchRequest(RID, "door-1", "verify", TEMPLATE, 1700000000.25, "card:42", 2,
                           {"level": "active", "score": 0.91, "cues": {"model": 0.9}}),
     b'{"v":1,"type":"match_request","request_id":"0123456789abcdef0123456789abcdef","device_id":"door-1",'
     b'"mode":"verify","template_b64":"mpkZP83MTD8AAAAAAAAAAA==","captured_at":1700000000.25,"claim":"card:42",'
     b'"attempt":2,"liveness":{"level":"active","score":0.91,"cues":{"model":0.9}}}'),
    (messages.Decision(RID, False, "locked_out", "王**", 30.0),
     b'{"v":1,"type":"decision","request_id":"0123456789abcdef0123456789abcdef","accepted":false,'
     b'"reason":"locked_out","display_name":"\xe7\x8e\x8b**","retry_after_s":30.0}'),
    (messages.Event(RID, "door-1", "pass", 1700000001.5, {"n": 3, "name": "Zoë"}),
     b'{"v":1,"type":"event","event_id":"0123456789abcdef0123456789abcdef","device_id":"door-1","kind":"pass",'
     b'"at":1700000001.5,"details":{"n":3,"name":"Zo\xc3\xab"}}'),
    (messages.Alarm(RID, "door-1", "presentation_attack", 1700000002, {"cache": None}),
     b'{"v":1,"type":"alarm","alarm_id":"0123456789abcdef0123456789abcdef","device_id":"door-1",'
     b'"kind":"presentation_attack","at":1700000002,"details":{"cache":null}}'),
    (messages.Telemetry("door-1", 1700000003.0, 12.5, 9.75, {"detect": 12.0}, {"outbox": 2}, "w600k-mbf"),
     b'{"v":1,"type":"telemetry","device_id":"door-1","at":1700000003.0,"uptime_s":12.5,"frames_per_s":9.75,'
     b'"stage_latency_ms":{"detect":12.0},"queue_depths":{"outbox":2},"pack":"w600k-mbf"}'),
    (messages.SyncRequest(RID, "door-1", 7, "a" * 64, RID, 3, "s-1"),
     b'{"v":1,"type":"sync_request","request_id":"0123456789abcdef0123456789abcdef","device_id":"door-1",'
     b'"revision":7,"digest":"' + b"a" * 64 + b'","snapshot_id":"0123456789abcdef0123456789abcdef",'
     b'"snapshot_revision":3,"cursor":"s-1"}'),
    (messages.SyncAck("door-1", 7, 1700000004.0),
     b'{"v":1,"type":"sync_ack","device_id":"door-1","revision":7,"at":1700000004.0}'),
    (messages.Delta(RID, "changes", 3, 7, 9, "w600k-mbf", "1.0",
                    [{"s": "subj-1", "r": 4, "t": TEMPLATE, "n": "A**", "c": "b" * 64}], [{"s": "subj-2", "r": 5}]),
     b'{"v":1,"type":"delta","request_id":"0123456789abcdef0123456789abcdef","kind":"changes","base":3,'
     b'"revision":7,"head":9,"pack_id":"w600k-mbf","pack_version":"1.0","upserts":[{"s":"subj-1","r":4,'
     b'"t":"mpkZP83MTD8AAAAAAAAAAA==","n":"A**","c":"' + b"b" * 64 + b'"}],"tombstones":[{"s":"subj-2","r":5}],'
     b'"snapshot_id":"","after":"","cursor":"","last":true,"complete":false}'),
    (messages.OutboxAck([RID]),
     b'{"v":1,"type":"outbox_ack","ids":["0123456789abcdef0123456789abcdef"]}'),
    (messages.EnrollmentEvent(RID, "deleted", "ref-1", "J*** D**", 8, 1700000005.0),
     b'{"v":1,"type":"enrollment_event","event_id":"0123456789abcdef0123456789abcdef","action":"deleted",'
     b'"subject_ref":"ref-1","display_name":"J*** D**","revision":8,"at":1700000005.0}'),
]


def test_every_message_type_has_a_fixed_wire_sample():
    assert {type(message) for message, _ in WIRE} == set(messages.MESSAGE_TYPES.values())


@pytest.mark.parametrize("message, wire", WIRE, ids=[m.TYPE for m, _ in WIRE])
def test_encoding_is_byte_for_byte_unchanged(message, wire):
    assert message.encode() == wire


@pytest.mark.parametrize("message, wire", WIRE, ids=[m.TYPE for m, _ in WIRE])
def test_round_trip(message, wire):
    decoded = messages.decode(wire, type(message))
    assert type(decoded) is type(message) and decoded == message
    # numbers come back as floats (1700000002 -> 1700000002.0), so a second trip is exact
    assert messages.decode(decoded.encode()).encode() == decoded.encode()
    assert messages.decode(decoded.encode()) == decoded


def test_decoded_numbers_are_floats_and_entries_plain_dicts():
    alarm = messages.decode(WIRE[3][1])
    assert isinstance(alarm.at, float) and alarm.at == 1700000002.0
    delta = messages.decode(WIRE[7][1])
    assert type(delta.upserts[0]) is dict and type(delta.tombstones[0]) is dict
    request = messages.decode(WIRE[0][1])
    assert np.allclose(request.vector(), [0.6, 0.8, 0.0, 0.0])


def test_constructors_stay_positional_and_unchecked():
    # services build messages positionally and from trusted values: construction checks nothing
    # (decode does), and dataclasses.replace keeps working
    unchecked = messages.Decision(RID, True, "no_match")
    assert dataclasses.replace(unchecked, accepted=False).accepted is False
    # the device's own signature came last, optional (security.device_reports)
    assert [f.name for f in dataclasses.fields(messages.Event)] == ["event_id", "device_id", "kind", "at", "details",
                                                                    "signature"]
    assert [f.name for f in dataclasses.fields(messages.Alarm)] == ["alarm_id", "device_id", "kind", "at", "details",
                                                                    "signature"]


def test_events_and_alarms_share_one_ref():
    event, alarm = WIRE[2][0], messages.Alarm("f" * 32, "door-1", "tamper", 1.0)
    assert isinstance(event, messages.Report) and isinstance(alarm, messages.Report)
    assert (event.ref, alarm.ref) == (RID, "f" * 32)
    assert "ref" not in event.encode().decode() and '"alarm_id"' in alarm.encode().decode()


def test_a_dataclass_nested_in_a_field_is_written_as_its_fields():
    event = messages.Event(RID, "door-1", "pass", 1.5, {"at": dataclasses.make_dataclass("At", ["u"])(2.0)})
    assert b'"details":{"at":{"u":2.0}}' in event.encode()
    with pytest.raises(TypeError):
        messages.Event(RID, "door-1", "pass", 1.5, {"at": object()}).encode()


def test_a_decoded_probe_is_read_once_and_handed_out_as_a_private_copy():
    request = messages.decode(WIRE[0][1], messages.MatchRequest)
    first, second = request.vector(), request.vector()
    assert first.dtype == np.float32 and first.flags.writeable and first.tolist() == pytest.approx([0.6, 0.8, 0, 0])
    first[0] = 9.0
    assert second[0] == pytest.approx(0.6) and request.vector()[0] == pytest.approx(0.6)
    assert dataclasses.replace(request, template_b64=messages.MatchRequest.pack_vector(
        np.array([0.0, 0.0, 1.0], dtype=np.float32))).vector().tolist() == [0.0, 0.0, 1.0]
    unchecked = messages.MatchRequest(RID, "door-1", "identify", messages.MatchRequest.pack_vector(np.ones(3)), 0.0)
    assert unchecked.vector().tolist() == [1.0, 1.0, 1.0]  # built in code: read, never checked (as before)
