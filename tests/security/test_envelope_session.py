"""Session envelopes (format 3): the epoch is signed once, every message still opens once,
only at its recipient, within its epoch and window, and anything else is refused with its reason."""
from __future__ import annotations

import dataclasses
import os
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import ErrorCode
from appliance.security import signing
from appliance.security.envelope import (
    Aead, EnvelopeRejected, Header, MessageType, NodeKeys, Opener, RejectReason, ReplayGuard, Sealer, key_id,
)
from appliance.security.envelope_format import LENGTH, MAGIC, SESSION_FORMAT_VERSION, parse
from appliance.security.envelope_session import (
    EPOCH_CLOCK_SKEW_S, EPOCH_DOMAIN, EPOCH_LIFETIME_S, epoch_statement, session_cipher,
)
from appliance.security.suites import Suite
from flipkit import flipped, unexpected_flips

NOW = 1_800_000_000.0
NOW_MS = int(NOW * 1000)
DEVICE = NodeKeys.generate("door-a")
DOOR_B = NodeKeys.generate("door-b")
MATCHER = NodeKeys.generate("matcher")
OTHER = NodeKeys.generate("matcher-2")
PAYLOAD = os.urandom(512)
SEALED = Sealer(DEVICE).seal(MATCHER.public(), MessageType.PROBE, PAYLOAD, "w600k-mbf", "1.0", now=NOW)
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# byte offsets of SEALED's header (docs/security.md, session format)
SENDER_END = 8 + len("door-a")
PACK_LEN_AT = SENDER_END + 8
VERSION_LEN_AT = PACK_LEN_AT + 1 + len("w600k-mbf")
TIME_AT = VERSION_LEN_AT + 1 + len("1.0")
EPOCH_AT = TIME_AT + 16 + 12
LENGTH_AT = EPOCH_AT + 32 + 8 + 64


def opener(keys=MATCHER, senders=(DEVICE,), **kwargs) -> Opener:
    return Opener(keys, [s.public() for s in senders], **kwargs)


def rejected(open_call) -> RejectReason:
    with pytest.raises(EnvelopeRejected) as info:
        open_call()
    assert info.value.code is ErrorCode.ENVELOPE_REJECTED
    return info.value.reason


def crafted(timestamp_ms: int, not_after_ms: int, signer=DEVICE.signing, epoch_public: bytes | None = None,
            counter: int = 1) -> bytes:
    """A session envelope made field by field, as a sender that ignores its epoch rules would."""
    private = X25519PrivateKey.generate()
    public = epoch_public if epoch_public is not None else private.public_key().public_bytes_raw()
    recipient = MATCHER.public()
    signature = signing.sign(signer, EPOCH_DOMAIN, epoch_statement("door-a", recipient.key_id, public, not_after_ms))
    cipher = session_cipher(private.exchange(recipient.agreement), public, recipient.agreement.public_bytes_raw(),
                            "door-a", Aead.AES_256_GCM)
    nonce = os.urandom(12)
    header = Header(SESSION_FORMAT_VERSION, MessageType.PROBE, Aead.AES_256_GCM, "door-a", recipient.key_id, "", "",
                    timestamp_ms, counter, nonce, public, Suite.DEFAULT, not_after_ms, signature).encode()
    ciphertext = cipher.encrypt(nonce, b"crafted", header)
    return header + LENGTH.pack(len(ciphertext)) + ciphertext


def test_an_epoch_is_signed_and_verified_once_then_each_message_is_one_aead():
    sealer, receiver = Sealer(DEVICE), opener()
    sealed = [sealer.seal(MATCHER.public(), MessageType.PROBE, b"m%d" % i, now=NOW + i) for i in range(5)]
    assert [receiver.open(s, now=NOW + 5).payload for s in sealed] == [b"m%d" % i for i in range(5)]
    assert sealer.epochs.epochs_started == 1 and receiver.epochs.verified == 1 and len(receiver.epochs) == 1
    headers = [parse(s)[0] for s in sealed]
    first = headers[0]
    assert {(h.version, h.ephemeral, h.not_after_ms, h.epoch_signature) for h in headers} == {
        (SESSION_FORMAT_VERSION, first.ephemeral, NOW_MS + int(EPOCH_LIFETIME_S * 1000), first.epoch_signature)}
    assert len({h.nonce for h in headers}) == 5 and PAYLOAD not in SEALED


def test_layout_offsets_used_below_match_the_format():
    header = parse(SEALED)[0]
    assert SEALED[EPOCH_AT:EPOCH_AT + 32] == header.ephemeral
    assert SEALED[LENGTH_AT - 64:LENGTH_AT] == header.epoch_signature
    assert LENGTH_AT + 4 + int.from_bytes(SEALED[LENGTH_AT:LENGTH_AT + 4], "big") == len(SEALED)


def expected_reasons(offset: int) -> set[RejectReason]:
    """Structure first, then the epoch statement's signature, then the AEAD tag (which covers
    the whole header: type, labels, timestamp, counter, nonce)."""
    if offset < 4:
        return {RejectReason.MALFORMED}
    if offset == 4:  # another version reads another layout
        return {RejectReason.UNSUPPORTED_VERSION, RejectReason.MALFORMED, RejectReason.TRUNCATED}
    if offset in (5, 6):  # message type, cipher: unknown, or a valid one the tag (or its key) refuses
        return {RejectReason.MALFORMED, RejectReason.DECRYPT_FAILED}
    if offset == 7:
        return {RejectReason.TRUNCATED, RejectReason.MALFORMED, RejectReason.UNKNOWN_SENDER}
    if offset < SENDER_END:
        return {RejectReason.UNKNOWN_SENDER, RejectReason.MALFORMED}
    if offset < PACK_LEN_AT:  # the recipient key id is part of the signed statement
        return {RejectReason.BAD_SIGNATURE}
    if offset in (PACK_LEN_AT, VERSION_LEN_AT) or LENGTH_AT <= offset < LENGTH_AT + 4:
        return {RejectReason.TRUNCATED, RejectReason.MALFORMED}
    if offset < TIME_AT:
        return {RejectReason.DECRYPT_FAILED, RejectReason.MALFORMED}
    if EPOCH_AT <= offset < LENGTH_AT:  # epoch public key, not-after, signature
        return {RejectReason.BAD_SIGNATURE}
    return {RejectReason.DECRYPT_FAILED}


def test_every_header_bit_flip_is_rejected_with_its_reason():
    """Every bit up to the ciphertext, not a sample: a layout's corner (the version byte turned
    into another known version) is one flip among hundreds."""
    assert not unexpected_flips(SEALED, range(LENGTH_AT + 4), lambda damaged: rejected(
        lambda: opener().open(damaged, now=NOW)), lambda offset, bit: expected_reasons(offset))


@FEW
@given(offset=st.integers(0, len(SEALED) - 1), bit=st.integers(0, 7))
def test_any_bit_flip_is_rejected_with_its_reason(offset, bit):
    damaged = flipped(SEALED, offset, bit)
    assert rejected(lambda: opener().open(damaged, now=NOW)) in expected_reasons(offset)


@FEW
@given(data=st.one_of(st.binary(max_size=600).map(lambda b: MAGIC + bytes([SESSION_FORMAT_VERSION]) + b),
                      st.integers(0, len(SEALED) - 1).map(lambda n: SEALED[:n])))
def test_arbitrary_or_truncated_session_bytes_never_raise_anything_but_a_rejection(data):
    rejected(lambda: opener().open(data, now=NOW))


def test_tampered_ciphertext_in_a_warm_epoch_is_refused_and_the_epoch_still_works():
    sealer, receiver = Sealer(DEVICE), opener()
    receiver.open(sealer.seal(MATCHER.public(), MessageType.PROBE, b"first", now=NOW), now=NOW)
    damaged = bytearray(sealer.seal(MATCHER.public(), MessageType.PROBE, b"second", now=NOW))
    damaged[-1] ^= 0x80
    assert rejected(lambda: receiver.open(bytes(damaged), now=NOW)) is RejectReason.DECRYPT_FAILED
    assert receiver.open(sealer.seal(MATCHER.public(), MessageType.PROBE, b"third", now=NOW), now=NOW).payload \
        == b"third"


def test_an_epoch_signed_by_another_key_or_for_another_recipient_is_refused():
    assert rejected(lambda: opener().open(crafted(NOW_MS, NOW_MS + 1000, signer=OTHER.signing), now=NOW)) \
        is RejectReason.BAD_SIGNATURE
    impostor = NodeKeys("door-a", OTHER.signing, OTHER.agreement)
    forged = Sealer(impostor).seal(MATCHER.public(), MessageType.PROBE, PAYLOAD, now=NOW)
    assert rejected(lambda: opener().open(forged, now=NOW)) is RejectReason.BAD_SIGNATURE
    assert rejected(lambda: opener(keys=OTHER).open(SEALED, now=NOW)) is RejectReason.WRONG_RECIPIENT
    # a low-order epoch key, properly signed, gives no shared secret
    assert rejected(lambda: opener().open(crafted(NOW_MS, NOW_MS + 1000, epoch_public=bytes(32)), now=NOW)) \
        is RejectReason.DECRYPT_FAILED


def test_a_message_sealed_after_its_epoch_or_an_epoch_too_long_is_refused():
    assert rejected(lambda: opener().open(crafted(NOW_MS, NOW_MS - 1), now=NOW)) is RejectReason.EPOCH_EXPIRED
    too_far = NOW_MS + int((EPOCH_LIFETIME_S + EPOCH_CLOCK_SKEW_S) * 1000) + 1
    assert rejected(lambda: opener().open(crafted(NOW_MS, too_far), now=NOW)) is RejectReason.EPOCH_TOO_LONG
    assert opener().open(crafted(NOW_MS, too_far - 1), now=NOW).payload == b"crafted"
    with pytest.raises(ValueError):
        Sealer(DEVICE, epoch_lifetime_s=EPOCH_LIFETIME_S + 1)


def test_epochs_end_after_their_lifetime_or_message_budget():
    timed = Sealer(DEVICE, epoch_lifetime_s=60)
    first = timed.seal(MATCHER.public(), MessageType.EVENT, b"a", now=NOW)
    same = timed.seal(MATCHER.public(), MessageType.EVENT, b"b", now=NOW + 60)
    later = timed.seal(MATCHER.public(), MessageType.EVENT, b"c", now=NOW + 60.001)
    assert parse(first)[0].ephemeral == parse(same)[0].ephemeral != parse(later)[0].ephemeral
    counted = Sealer(DEVICE, epoch_messages=2)
    sealed = [counted.seal(MATCHER.public(), MessageType.EVENT, b"%d" % i, now=NOW) for i in range(5)]
    assert counted.epochs.epochs_started == 3 and len({parse(s)[0].ephemeral for s in sealed}) == 3
    receiver = opener()
    assert [receiver.open(s, now=NOW + 61).payload for s in (first, same, later, *sealed)][-1] == b"4"
    assert receiver.epochs.verified == 5


def test_a_message_sealed_ahead_of_time_leaves_no_epoch_the_recipients_refuse():
    """Seals on the real clock: a future timestamp (a clock set back afterwards) gets its own
    epoch, the next message a new one; an outbox message sealed an hour ago keeps the current."""
    now = time.time()
    sealer, receiver = Sealer(DEVICE), opener()
    future = sealer.seal(MATCHER.public(), MessageType.EVENT, b"future", now=now + 3600)
    assert rejected(lambda: receiver.open(future, now=now)) is RejectReason.STALE_TIMESTAMP
    present = sealer.seal(MATCHER.public(), MessageType.EVENT, b"present", now=now)
    assert parse(present)[0].not_after_ms == int(now * 1000) + int(EPOCH_LIFETIME_S * 1000)
    assert receiver.open(present, now=now).payload == b"present"
    past = sealer.seal(MATCHER.public(), MessageType.EVENT, b"past", now=now - 3600)
    assert parse(past)[0].ephemeral == parse(present)[0].ephemeral and sealer.epochs.epochs_started == 2
    assert Opener(MATCHER, [DEVICE.public()], window_s=7200).open(past, now=now).payload == b"past"


def test_replays_within_and_across_epochs_and_stale_messages_are_refused():
    sealer, receiver = Sealer(DEVICE, epoch_lifetime_s=60), opener()
    old_epoch = sealer.seal(MATCHER.public(), MessageType.PROBE, b"a", now=NOW)
    receiver.open(old_epoch, now=NOW)
    assert rejected(lambda: receiver.open(old_epoch, now=NOW + 1)) is RejectReason.REPLAYED_COUNTER
    new_epoch = sealer.seal(MATCHER.public(), MessageType.PROBE, b"b", now=NOW + 61)
    receiver.open(new_epoch, now=NOW + 61)
    assert parse(old_epoch)[0].ephemeral != parse(new_epoch)[0].ephemeral
    assert rejected(lambda: receiver.open(old_epoch, now=NOW + 62)) is RejectReason.REPLAYED_COUNTER
    assert rejected(lambda: receiver.open(new_epoch, now=NOW + 62)) is RejectReason.REPLAYED_COUNTER
    assert rejected(lambda: opener().open(old_epoch, now=NOW + 121)) is RejectReason.STALE_TIMESTAMP
    assert rejected(lambda: opener().open(old_epoch, expect=MessageType.EVENT, now=NOW)) \
        is RejectReason.UNEXPECTED_TYPE


def test_the_epoch_cache_is_bounded_and_an_evicted_epoch_is_verified_again():
    receiver = opener(senders=(DEVICE, DOOR_B), session_cache_entries=1)
    from_a, from_b = Sealer(DEVICE), Sealer(DOOR_B)
    receiver.open(from_a.seal(MATCHER.public(), MessageType.EVENT, b"a1", now=NOW), now=NOW)
    receiver.open(from_b.seal(MATCHER.public(), MessageType.EVENT, b"b1", now=NOW), now=NOW)
    assert len(receiver.epochs) == 1 and receiver.epochs.verified == 2
    assert receiver.open(from_a.seal(MATCHER.public(), MessageType.EVENT, b"a2", now=NOW), now=NOW).payload == b"a2"
    assert receiver.epochs.verified == 3  # door-a's epoch was evicted by door-b's: verified again
    receiver.open(from_a.seal(MATCHER.public(), MessageType.EVENT, b"a3", now=NOW), now=NOW)
    assert receiver.epochs.verified == 3


def test_a_re_keyed_sender_s_old_epochs_open_no_more():
    """A door re-keyed while the recipient runs (``Opener.add_senders``, a stolen key replaced):
    a session its old key signed, already verified and cached, is refused from then on; another
    sender's epoch and the new key's are not touched."""
    receiver = opener(senders=(DEVICE, DOOR_B))
    stolen, other = Sealer(DEVICE), Sealer(DOOR_B)
    receiver.open(stolen.seal(MATCHER.public(), MessageType.EVENT, b"a1", now=NOW), now=NOW)
    receiver.open(other.seal(MATCHER.public(), MessageType.EVENT, b"b1", now=NOW), now=NOW)
    receiver.add_senders([DOOR_B.public()])  # the same keys: nothing forgotten
    assert len(receiver.epochs) == 2
    renewed = NodeKeys.generate("door-a")
    receiver.add_senders([renewed.public()])
    assert len(receiver.epochs) == 1  # door-b's epoch stays
    later = stolen.seal(MATCHER.public(), MessageType.EVENT, b"a2", now=NOW + 1)  # the same (old) epoch
    assert rejected(lambda: receiver.open(later, now=NOW + 1)) is RejectReason.BAD_SIGNATURE
    still = other.seal(MATCHER.public(), MessageType.EVENT, b"b2", now=NOW + 1)
    assert receiver.open(still, now=NOW + 1).payload == b"b2" and receiver.epochs.verified == 2  # from its cache
    fresh = Sealer(renewed).seal(MATCHER.public(), MessageType.EVENT, b"a3", now=NOW + 1)
    assert receiver.open(fresh, now=NOW + 1).payload == b"a3"


def test_a_restarted_recipient_verifies_the_epoch_again_and_refuses_what_came_before():
    sealer = Sealer(DEVICE)
    before = sealer.seal(MATCHER.public(), MessageType.PROBE, b"before", now=NOW)
    opener().open(before, now=NOW)
    restarted = opener(guard=ReplayGuard(not_before=NOW + 1))  # nothing carried over, not even the cache
    assert rejected(lambda: restarted.open(before, now=NOW + 2)) is RejectReason.REPLAYED_COUNTER
    after = sealer.seal(MATCHER.public(), MessageType.PROBE, b"after", now=NOW + 2)
    assert restarted.open(after, now=NOW + 2).payload == b"after" and restarted.epochs.verified == 1


def test_old_format_messages_still_open_beside_session_ones_under_one_replay_window():
    per_message = Sealer(DEVICE, session=False, counter_start=10)
    session = Sealer(DEVICE, counter_start=10)
    receiver = opener()
    old = per_message.seal(MATCHER.public(), MessageType.PROBE, b"v1", now=NOW)
    assert old[4] == 1 and receiver.open(old, now=NOW).payload == b"v1"
    same_counter = session.seal(MATCHER.public(), MessageType.PROBE, b"v3", now=NOW)
    assert rejected(lambda: receiver.open(same_counter, now=NOW)) is RejectReason.REPLAYED_COUNTER
    assert receiver.open(session.seal(MATCHER.public(), MessageType.PROBE, b"v3", now=NOW), now=NOW).payload == b"v3"


def test_the_matchers_answer_opens_only_at_the_device_it_was_sealed_to():
    replica = Sealer(MATCHER.renamed("matcher-2"))
    matchers = [MATCHER.public(), dataclasses.replace(MATCHER.public(), node_id="matcher-2")]
    door_a, door_b = Opener(DEVICE, matchers), Opener(DOOR_B, matchers)
    answer = replica.seal(DEVICE.public(), MessageType.DECISION, b"granted", now=NOW)
    assert door_a.open(answer, expect=MessageType.DECISION, now=NOW).payload == b"granted"
    assert rejected(lambda: door_b.open(answer, now=NOW)) is RejectReason.WRONG_RECIPIENT
    # the same epoch to door-b is another statement and another key: door-a cannot open it
    to_b = replica.seal(DOOR_B.public(), MessageType.DECISION, b"denied", now=NOW)
    assert parse(to_b)[0].ephemeral == parse(answer)[0].ephemeral
    assert rejected(lambda: door_a.open(to_b, now=NOW)) is RejectReason.WRONG_RECIPIENT
    assert door_b.open(to_b, now=NOW).payload == b"denied"
    # a door's own keys cannot pass for the matcher: its epoch statement is not the matcher's
    forged = Sealer(NodeKeys("matcher-2", DEVICE.signing, DEVICE.agreement)).seal(
        DEVICE.public(), MessageType.DECISION, b"granted", now=NOW)
    assert rejected(lambda: Opener(DEVICE, matchers).open(forged, now=NOW)) is RejectReason.BAD_SIGNATURE
    assert key_id(DEVICE.agreement.public_key()) == parse(answer)[0].recipient_key_id


def test_a_session_header_is_only_of_the_default_suite_with_a_full_signature():
    header = parse(SEALED)[0]
    for broken in (dataclasses.replace(header, suite=Suite.SM), dataclasses.replace(header, epoch_signature=b"x")):
        with pytest.raises(ValueError):
            broken.encode()
    assert header.encode() == SEALED[:LENGTH_AT]
