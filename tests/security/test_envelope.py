"""Envelope properties: round trips, and every corruption or replay rejected with its reason.

``SEALED`` is the per-message format (1) that nodes before issue 17 send and every node still
opens; the session format's own properties are in ``test_envelope_session.py``."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import ErrorCode
from appliance.security.envelope import (
    COUNTER_WINDOW, MAGIC, Aead, EnvelopeRejected, MessageType, NodeKeys, Opener, RejectReason, Sealer,
)
from appliance.security.envelope_format import SESSION_FORMAT_VERSION
from flipkit import flipped, unexpected_flips

NOW = 1_800_000_000.0
DEVICE = NodeKeys.generate("door-a")
MATCHER = NodeKeys.generate("matcher-1")
OTHER = NodeKeys.generate("matcher-2")
PAYLOAD = os.urandom(2048)
SEALED = Sealer(DEVICE, session=False).seal(MATCHER.public(), MessageType.PROBE, PAYLOAD, "w600k-mbf", "1.0", now=NOW)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# byte offsets of the variable-length header of SEALED (see docs/security.md)
SENDER_END = 8 + len("door-a")
PACK_LEN_AT = SENDER_END + 8
VERSION_LEN_AT = PACK_LEN_AT + 1 + len("w600k-mbf")
LENGTH_AT = VERSION_LEN_AT + 1 + len("1.0") + 16 + 12 + 32


def opener(keys=MATCHER, senders=(DEVICE,), **kwargs) -> Opener:
    return Opener(keys, [s.public() for s in senders], **kwargs)


def rejected(open_call) -> RejectReason:
    with pytest.raises(EnvelopeRejected) as info:
        open_call()
    assert info.value.code is ErrorCode.ENVELOPE_REJECTED
    return info.value.reason


@PROPERTY
@given(payload=st.binary(max_size=4096), pack=st.text(max_size=20),
       aead=st.sampled_from((Aead.AES_256_GCM, Aead.CHACHA20_POLY1305)), kind=st.sampled_from(MessageType),
       session=st.booleans())
def test_round_trip(payload, pack, aead, kind, session):
    sealed = Sealer(DEVICE, aead, session=session).seal(MATCHER.public(), kind, payload, pack, "2", now=NOW)
    assert sealed[4] == (3 if session else 1)
    opened = opener().open(sealed, now=NOW)
    header = opened.header
    assert (opened.payload, header.pack_id, header.type, header.sender) == (payload, pack, kind, "door-a")


def expected_reasons(offset: int, bit: int) -> set[RejectReason]:
    """Which reason flipping ``bit`` at ``offset`` must produce: structure first, then signature."""
    if offset < 4:
        return {RejectReason.MALFORMED}
    if offset == 4:  # version 1 becomes another: unknown, or a known one whose layout these bytes do not fit
        if SEALED[4] ^ (1 << bit) == SESSION_FORMAT_VERSION:  # bit 1: an epoch block, no signature
            return {RejectReason.TRUNCATED, RejectReason.MALFORMED}
        return {RejectReason.UNSUPPORTED_VERSION}
    if offset in (5, 6):  # message type, cipher: unknown value, or a valid one the signature refuses
        return {RejectReason.MALFORMED, RejectReason.BAD_SIGNATURE}
    if offset == 7:  # sender length: the layout shifts
        return {RejectReason.TRUNCATED, RejectReason.MALFORMED, RejectReason.UNKNOWN_SENDER}
    if offset < SENDER_END:
        return {RejectReason.UNKNOWN_SENDER, RejectReason.MALFORMED}
    if offset in (PACK_LEN_AT, VERSION_LEN_AT) or LENGTH_AT <= offset < LENGTH_AT + 4:
        return {RejectReason.TRUNCATED, RejectReason.MALFORMED}
    if PACK_LEN_AT < offset < VERSION_LEN_AT + 1 + len("1.0"):  # pack labels: may stop being UTF-8
        return {RejectReason.BAD_SIGNATURE, RejectReason.MALFORMED}
    return {RejectReason.BAD_SIGNATURE}


def test_every_header_bit_flip_is_rejected_with_its_reason():
    """Every bit up to the ciphertext, not a sample: a layout's corner (the version byte turned
    into another known version) is one flip among hundreds."""
    assert not unexpected_flips(SEALED, range(LENGTH_AT + 4), lambda damaged: rejected(
        lambda: opener().open(damaged, now=NOW)), expected_reasons)


@PROPERTY
@given(offset=st.integers(0, len(SEALED) - 1), bit=st.integers(0, 7))
def test_any_bit_flip_is_rejected_with_its_reason(offset, bit):
    damaged = flipped(SEALED, offset, bit)
    assert rejected(lambda: opener().open(damaged, now=NOW)) in expected_reasons(offset, bit)


@PROPERTY
@given(length=st.integers(0, len(SEALED) - 1))
def test_any_truncation_is_rejected(length):
    assert rejected(lambda: opener().open(SEALED[:length], now=NOW)) is RejectReason.TRUNCATED


@PROPERTY
@given(extra=st.binary(min_size=1, max_size=64))
def test_trailing_bytes_are_rejected(extra):
    assert rejected(lambda: opener().open(SEALED + extra, now=NOW)) is RejectReason.MALFORMED


@PROPERTY
@given(data=st.one_of(st.binary(max_size=3000), st.binary(max_size=200).map(lambda b: MAGIC + b"\x01" + b)))
def test_arbitrary_bytes_never_raise_anything_but_a_rejection(data):
    rejected(lambda: opener().open(data, now=NOW))


def test_wrong_recipient_is_rejected():
    assert rejected(lambda: opener(keys=OTHER).open(SEALED, now=NOW)) is RejectReason.WRONG_RECIPIENT


def test_wrong_sender_key_is_rejected():
    impostor = NodeKeys("door-a", OTHER.signing, OTHER.agreement)  # claims door-a, has other keys
    for session in (False, True):
        forged = Sealer(impostor, session=session).seal(MATCHER.public(), MessageType.PROBE, PAYLOAD, now=NOW)
        assert rejected(lambda forged=forged: opener().open(forged, now=NOW)) is RejectReason.BAD_SIGNATURE


def test_unknown_sender_is_rejected():
    stranger = Sealer(NodeKeys.generate("door-z")).seal(MATCHER.public(), MessageType.PROBE, PAYLOAD, now=NOW)
    assert rejected(lambda: opener().open(stranger, now=NOW)) is RejectReason.UNKNOWN_SENDER


def test_replayed_counter_is_rejected_and_counted():
    receiver = opener()
    receiver.open(SEALED, now=NOW)
    assert rejected(lambda: receiver.open(SEALED, now=NOW + 1)) is RejectReason.REPLAYED_COUNTER
    assert receiver.rejections[RejectReason.REPLAYED_COUNTER] == 1


@PROPERTY
@given(order=st.permutations(range(8)))
def test_reordered_messages_within_the_window_open_once_each(order):
    sealer = Sealer(DEVICE, counter_start=1000)
    messages = [sealer.seal(MATCHER.public(), MessageType.EVENT, b"e%d" % i, now=NOW) for i in range(8)]
    receiver = opener()
    assert [receiver.open(messages[i], now=NOW).payload for i in order] == [b"e%d" % i for i in order]
    for i in order[:3]:
        assert rejected(lambda i=i: receiver.open(messages[i], now=NOW)) is RejectReason.REPLAYED_COUNTER


def test_counter_older_than_the_window_is_rejected():
    sealer = Sealer(DEVICE, counter_start=0, session=False)
    old = sealer.seal(MATCHER.public(), MessageType.EVENT, b"old", now=NOW)
    sealer.counter += COUNTER_WINDOW
    receiver = opener()
    receiver.open(sealer.seal(MATCHER.public(), MessageType.EVENT, b"new", now=NOW), now=NOW)
    assert rejected(lambda: receiver.open(old, now=NOW)) is RejectReason.REPLAYED_COUNTER


@PROPERTY
@given(skew=st.one_of(st.floats(121, 1e6), st.floats(-1e6, -121)))
def test_stale_or_future_timestamp_is_rejected(skew):
    assert rejected(lambda: opener(window_s=120).open(SEALED, now=NOW + skew)) is RejectReason.STALE_TIMESTAMP


def test_unexpected_message_type_is_rejected():
    assert rejected(lambda: opener().open(SEALED, expect=MessageType.TEMPLATE, now=NOW)) is RejectReason.UNEXPECTED_TYPE


def test_header_is_bound_to_the_ciphertext():
    """A signed header whose fields were changed by the sender's own key still fails to decrypt."""
    from appliance.security.envelope import SIGNATURE_BYTES

    body = bytearray(SEALED[:-SIGNATURE_BYTES])
    body[PACK_LEN_AT + 1] ^= 0x01  # change the pack id, then re-sign it with the real key
    resigned = bytes(body) + DEVICE.signing.sign(bytes(body))
    assert rejected(lambda: opener().open(resigned, now=NOW)) is RejectReason.DECRYPT_FAILED


def test_decisions_are_signed_by_the_matcher_and_carry_no_score():
    """The matcher's answer (a protocol Decision) opens only with a matcher's signature."""
    from appliance.protocol import messages

    decision = messages.Decision(messages.new_id(), True, messages.Reason.MATCH, "Z**** S**")
    device = Opener(DEVICE, [MATCHER.public()])
    answer = Sealer(MATCHER).seal(DEVICE.public(), MessageType.DECISION, decision.encode())
    opened = device.open(answer, expect=MessageType.DECISION)
    assert messages.decode(opened.payload, messages.Decision) == decision
    assert b"score" not in opened.payload
    forged = Sealer(NodeKeys("matcher-1", OTHER.signing, OTHER.agreement)).seal(
        DEVICE.public(), MessageType.DECISION, decision.encode())
    assert rejected(lambda: device.open(forged, expect=MessageType.DECISION)) is RejectReason.BAD_SIGNATURE
    probe_typed = Sealer(MATCHER).seal(DEVICE.public(), MessageType.PROBE, decision.encode())
    assert rejected(lambda: device.open(probe_typed, expect=MessageType.DECISION)) is RejectReason.UNEXPECTED_TYPE


def test_layout_offsets_used_above_match_the_format():
    (length,) = struct.unpack(">I", SEALED[LENGTH_AT:LENGTH_AT + 4])
    assert LENGTH_AT + 4 + length + 64 == len(SEALED)


def test_a_long_lived_sender_is_tracked_in_bounded_memory_and_pruned_once_per_window():
    """A door sends for months: its seen counters stay bounded, every counter is accepted once
    and replays (in the window or below it) are refused all along; the set is rebuilt once per
    window's worth of messages, not on every message once the first window is full."""
    from appliance.security.envelope import PRUNE_AT_WINDOWS, ReplayGuard

    guard, window = ReplayGuard(window=64), 64
    rebuilt, held = 0, None
    for counter in range(10 * window):
        sent = counter + (1 if counter % 2 == 0 else -1)  # pairs swapped: reordered by the transport
        guard.check("door-a", sent)
        guard.record("door-a", sent)
        rebuilt += held is not None and guard._seen["door-a"] is not held
        held = guard._seen["door-a"]
        assert len(held) <= PRUNE_AT_WINDOWS * window
        for replayed in (sent, sent - window // 2, sent - 3 * window):
            if replayed >= 0:
                assert rejected(lambda r=replayed: guard.check("door-a", r)) is RejectReason.REPLAYED_COUNTER
    assert rebuilt <= 10 * window // ((PRUNE_AT_WINDOWS - 1) * window)


def test_replay_state_survives_a_restart_or_the_start_time_is_enforced():
    from appliance.security.envelope import ReplayGuard

    first = opener()
    first.open(SEALED, now=NOW)
    restored = opener(guard=ReplayGuard.from_state(first.guard.state()))
    assert rejected(lambda: restored.open(SEALED, now=NOW)) is RejectReason.REPLAYED_COUNTER
    fresh = opener(guard=ReplayGuard(not_before=NOW + 1))  # restarted after SEALED was sealed
    assert rejected(lambda: fresh.open(SEALED, now=NOW + 2)) is RejectReason.REPLAYED_COUNTER
    later = Sealer(DEVICE).seal(MATCHER.public(), MessageType.PROBE, PAYLOAD, now=NOW + 3)
    assert fresh.open(later, now=NOW + 3).payload == PAYLOAD
