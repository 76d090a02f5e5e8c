"""The SM suite: the primitives against the standards' vectors, SM envelopes both ways, tampering,
wrong keys, a site with both suites, downgrades, and the missing library named by its extra."""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import load_config
from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol.directory import MATCHER, NodeDirectory
from appliance.security import sm
from appliance.security.envelope import (
    SIGNATURE_BYTES, Aead, EnvelopeRejected, MessageType, NodeKeys, Opener, RejectReason, Sealer,
)
from appliance.security.envelope_format import KEY_BLOCK_BYTES, SUITE_FORMAT_VERSION, parse
from appliance.security.keys import NODE_SM2_AGREEMENT, NODE_SM2_SIGNING, FileKeyProvider, ensure_keys
from appliance.security.suites import Suite, suites_in_use

NOW = 1_800_000_000.0
PAYLOAD = os.urandom(1024)
SM_DOOR, SM_MATCHER = NodeKeys.generate("door-sm", Suite.SM), NodeKeys.generate("matcher", Suite.SM)
DEFAULT_DOOR = NodeKeys.generate("door-default")

# GB/T 32918.5-2017 (GM/T 0003.5) example on the recommended curve: private key, its public key,
# and the signature of "message digest" with the default identifier 1234567812345678
SM2_D = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F9588939369" "2860B51A42FB81EF4DF7C5B8")
SM2_P = bytes.fromhex("04" "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
                      "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
SM2_SIG = bytes.fromhex("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
                        "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA")
# RFC 8998 appendix A.1: SM4-GCM
GCM_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
GCM_IV = bytes.fromhex("00001234567800000000ABCD")
GCM_AAD = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
GCM_PLAIN = bytes.fromhex("".join(c * 16 for c in "ABCDEFEA"))
GCM_SEALED = bytes.fromhex("17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
                           "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
                           "83DE3541E4C2B58177E065A9BF7B62EC")


def rejected(call) -> RejectReason:
    with pytest.raises(EnvelopeRejected) as info:
        call()
    return info.value.reason


def test_sm3_vectors_of_gb_t_32905():
    assert sm.sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm.sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_sm4_vector_of_gb_t_32907_and_sm4_gcm_of_rfc_8998():
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.SM4(GCM_KEY), modes.ECB()).encryptor()
    assert (encryptor.update(GCM_KEY) + encryptor.finalize()).hex() == "681edf34d206965e86b3e94f536e4246"
    assert sm.sm4_gcm_encrypt(GCM_KEY, GCM_IV, GCM_PLAIN, GCM_AAD) == GCM_SEALED
    assert sm.sm4_gcm_decrypt(GCM_KEY, GCM_IV, GCM_SEALED, GCM_AAD) == GCM_PLAIN
    from cryptography.exceptions import InvalidTag
    with pytest.raises(InvalidTag):
        sm.sm4_gcm_decrypt(GCM_KEY, GCM_IV, GCM_SEALED, GCM_AAD + b"x")


def test_sm2_key_and_signature_vectors_of_gb_t_32918():
    key = sm.Sm2PrivateKey(SM2_D)
    assert key.public.raw == SM2_P
    assert key.public.verify(SM2_SIG, b"message digest")
    assert not key.public.verify(SM2_SIG, b"message digesT")
    assert not key.public.verify(SM2_SIG[:-1] + bytes([SM2_SIG[-1] ^ 1]), b"message digest")
    # our own signatures are fresh each time (random k) and verify; another key's do not
    first, second = key.sign(b"door"), key.sign(b"door")
    assert first != second and len(first) == sm.SIGNATURE_BYTES and key.public.verify(first, b"door")
    assert not sm.Sm2PrivateKey(os.urandom(32)).public.verify(first, b"door")
    # the message key travels SM2-encrypted; only its key opens it
    wrapped = key.public.encrypt(GCM_KEY)
    assert len(wrapped) == sm.WRAPPED_KEY_BYTES and key.decrypt(wrapped) == GCM_KEY
    with pytest.raises(ValueError):
        sm.Sm2PrivateKey(os.urandom(32)).decrypt(wrapped)


def test_any_32_bytes_make_a_valid_private_key():
    for secret in (b"\x00" * 32, b"\xff" * 32, sm.CURVE_ORDER.to_bytes(32, "big")):
        key = sm.Sm2PrivateKey(secret)
        assert key.public.verify(key.sign(b"x"), b"x")


def test_sm_envelope_round_trip_both_ways_names_its_suite():
    to_matcher = Sealer(SM_DOOR).seal(SM_MATCHER.public(), MessageType.PROBE, PAYLOAD, "w600k-mbf", "1.0", now=NOW)
    header = parse(to_matcher)[0]
    assert to_matcher[4] == SUITE_FORMAT_VERSION and header.suite is Suite.SM and header.aead is Aead.SM4_GCM
    assert len(header.ephemeral) == KEY_BLOCK_BYTES[Suite.SM] and PAYLOAD not in to_matcher
    opened = Opener(SM_MATCHER, [SM_DOOR.public()]).open(to_matcher, now=NOW)
    assert (opened.payload, opened.header.pack_id, opened.header.sender) == (PAYLOAD, "w600k-mbf", "door-sm")
    back = Sealer(SM_MATCHER).seal(SM_DOOR.public(), MessageType.DECISION, b"ok", now=NOW)
    assert Opener(SM_DOOR, [SM_MATCHER.public()]).open(back, now=NOW).payload == b"ok"


@pytest.mark.parametrize("offset", [0, 4, 5, 6, 8, 20, 60, 120, -70, -40, -1])
def test_tampered_sm_envelopes_are_rejected(offset):
    sealed = bytearray(Sealer(SM_DOOR).seal(SM_MATCHER.public(), MessageType.EVENT, PAYLOAD, now=NOW))
    sealed[offset] ^= 0x01
    reason = rejected(lambda: Opener(SM_MATCHER, [SM_DOOR.public()]).open(bytes(sealed), now=NOW))
    assert reason in (RejectReason.MALFORMED, RejectReason.UNSUPPORTED_VERSION, RejectReason.BAD_SIGNATURE,
                      RejectReason.UNKNOWN_SENDER)


def test_a_re_signed_sm_envelope_with_a_changed_ciphertext_fails_to_decrypt():
    """Signature checks first; with the signature made good again, SM4-GCM's tag still refuses."""
    sealed = bytearray(Sealer(SM_DOOR).seal(SM_MATCHER.public(), MessageType.EVENT, PAYLOAD, now=NOW))
    sealed[-SIGNATURE_BYTES - 1] ^= 0x01
    body = bytes(sealed[:-SIGNATURE_BYTES])
    forged = body + SM_DOOR.sm2.signing.sign(body)
    assert rejected(lambda: Opener(SM_MATCHER, [SM_DOOR.public()]).open(forged, now=NOW)) \
        is RejectReason.DECRYPT_FAILED


def test_wrong_keys_are_rejected():
    sealed = Sealer(SM_DOOR).seal(SM_MATCHER.public(), MessageType.EVENT, PAYLOAD, now=NOW)
    impostor = dataclasses.replace(NodeKeys.generate("door-sm", Suite.SM).public())
    assert rejected(lambda: Opener(SM_MATCHER, [impostor]).open(sealed, now=NOW)) is RejectReason.BAD_SIGNATURE
    other = NodeKeys.generate("matcher", Suite.SM)
    assert rejected(lambda: Opener(other, [SM_DOOR.public()]).open(sealed, now=NOW)) is RejectReason.WRONG_RECIPIENT
    # the sender's directory entry has no SM2 keys: nothing to check an SM signature with
    without_sm2 = dataclasses.replace(SM_DOOR.public(), sm2=None, suite=Suite.DEFAULT)
    assert rejected(lambda: Opener(SM_MATCHER, [without_sm2]).open(sealed, now=NOW)) \
        is RejectReason.UNSUPPORTED_SUITE


def test_a_mixed_site_interoperates_and_refuses_a_downgrade():
    matcher_opener = Opener(SM_MATCHER, [SM_DOOR.public(), DEFAULT_DOOR.public()])
    from_sm = Sealer(SM_DOOR).seal(SM_MATCHER.public(), MessageType.EVENT, b"a", now=NOW)
    from_default = Sealer(DEFAULT_DOOR).seal(SM_MATCHER.public(), MessageType.EVENT, b"b", now=NOW)
    assert matcher_opener.open(from_sm, now=NOW).header.suite is Suite.SM
    assert matcher_opener.open(from_default, now=NOW).header.suite is Suite.DEFAULT
    # the SM matcher answers the default door with the default suite: the door has no SM2 keys
    answer = Sealer(SM_MATCHER).seal(DEFAULT_DOOR.public(), MessageType.DECISION, b"c", now=NOW)
    assert parse(answer)[0].suite is Suite.DEFAULT
    assert Opener(DEFAULT_DOOR, [SM_MATCHER.public()]).open(answer, now=NOW).payload == b"c"
    # the SM door's keys made to seal with the default suite: the matcher knows it declared SM
    downgraded = Sealer(dataclasses.replace(SM_DOOR, suite=Suite.DEFAULT)).seal(
        SM_MATCHER.public(), MessageType.EVENT, b"d", now=NOW)
    assert rejected(lambda: matcher_opener.open(downgraded, now=NOW)) is RejectReason.DOWNGRADE
    # during a migration (the door has SM2 keys but still declares default) both suites open
    migrating = dataclasses.replace(SM_DOOR, suite=Suite.DEFAULT)
    opener = Opener(SM_MATCHER, [migrating.public()])
    assert opener.open(Sealer(migrating).seal(SM_MATCHER.public(), MessageType.EVENT, b"e", now=NOW), now=NOW)
    assert opener.open(Sealer(SM_DOOR).seal(SM_MATCHER.public(), MessageType.EVENT, b"f", now=NOW), now=NOW)


def test_a_node_without_sm2_keys_refuses_sm_envelopes():
    sealed = Sealer(SM_DOOR).seal(SM_MATCHER.public(), MessageType.EVENT, b"x", now=NOW)
    default_keys = dataclasses.replace(SM_MATCHER, sm2=None, suite=Suite.DEFAULT)
    # a matcher that lost its SM2 keys: the key id cannot match, and nothing could decrypt
    assert rejected(lambda: Opener(default_keys, [SM_DOOR.public()]).open(sealed, now=NOW)) \
        is RejectReason.UNSUPPORTED_SUITE


def test_keys_from_a_provider_directory_entries_and_the_suites_in_use(tmp_path):
    provider = FileKeyProvider(tmp_path / "keys")
    ensure_keys(provider)
    plain = NodeKeys.from_provider("matcher", provider)
    assert plain.sm2 is None and not provider.exists(NODE_SM2_SIGNING)
    chosen = NodeKeys.from_provider("matcher", provider, "sm")  # selecting the suite makes the SM2 keys
    assert provider.exists(NODE_SM2_SIGNING) and provider.exists(NODE_SM2_AGREEMENT)
    assert chosen.suite is Suite.SM and NodeKeys.from_provider("matcher", provider, "sm").public() == chosen.public()
    back = NodeKeys.from_provider("matcher", provider)  # back on default: still opens SM envelopes
    assert back.suite is Suite.DEFAULT and back.sm2 is not None

    directory = NodeDirectory.load(tmp_path / "directory.json")
    directory.add(chosen, MATCHER)
    directory.add(chosen, MATCHER, name="matcher-1")
    directory.add(DEFAULT_DOOR)
    loaded = NodeDirectory.load(tmp_path / "directory.json")
    assert loaded.get("matcher-1") == dataclasses.replace(chosen.public(), node_id="matcher-1")
    assert loaded.get("door-default") == DEFAULT_DOOR.public()
    entries = json.loads((tmp_path / "directory.json").read_text())
    assert set(entries["door-default"]) == {"role", "signing", "agreement"}  # as written before the SM suite
    assert entries["matcher-1"]["suite"] == "sm" and "sm2_agreement" in entries["matcher-1"]

    config = load_config()
    config = dataclasses.replace(config, security=dataclasses.replace(config.security, crypto_suite="sm"))
    in_use = suites_in_use(config, loaded)
    assert in_use.suites == ("default", "sm") and in_use.mixed
    assert in_use.by_node == {"door-default": "default", "matcher": "sm", "matcher-1": "sm"}
    assert in_use.with_sm2_keys == ("matcher", "matcher-1") and in_use.library.startswith("gmalg ")
    assert in_use.as_dict()["configured"] == "sm"


def test_a_bad_sm2_key_in_the_directory_is_a_clear_error(tmp_path):
    path = tmp_path / "directory.json"
    directory = NodeDirectory.load(path)
    directory.add(SM_DOOR)
    path.write_text(path.read_text().replace('"sm2_signing": "B', '"sm2_signing": "C'))
    with pytest.raises(ApplianceError) as error:
        NodeDirectory.load(path)
    assert error.value.code is ErrorCode.PKI_ERROR


def test_the_sm_suite_without_its_library_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gmalg", None)  # as if not installed
    provider = FileKeyProvider(tmp_path / "keys")
    ensure_keys(provider)
    with pytest.raises(ApplianceError) as missing:
        NodeKeys.from_provider("door-a", provider, "sm")
    assert missing.value.code is ErrorCode.DEPENDENCY_MISSING
    assert "'face-appliance[sm]'" in missing.value.detail
    assert not provider.exists(NODE_SM2_SIGNING)  # nothing written before the error
    assert not sm.available() and sm.library_version() == "not installed"
    assert NodeKeys.from_provider("door-a", provider).suite is Suite.DEFAULT  # the default suite needs nothing


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tail=st.binary(min_size=0, max_size=600), suite=st.integers(0, 255), aead=st.integers(0, 255))
def test_arbitrary_sm_headers_never_raise_anything_but_a_rejection(tail, suite, aead):
    """A known sender's name, then anything: only EnvelopeRejected ever comes out."""
    sender = SM_DOOR.node_id.encode()
    data = b"FAEV" + bytes([SUITE_FORMAT_VERSION, MessageType.EVENT.value, aead, len(sender), suite]) + sender + tail
    with pytest.raises(EnvelopeRejected):
        Opener(SM_MATCHER, [SM_DOOR.public()]).open(data, now=NOW)


@pytest.mark.parametrize("signature", [b"\x00" * 64, b"\xff" * 64, sm.CURVE_ORDER.to_bytes(32, "big") * 2])
def test_out_of_range_sm2_signatures_are_bad_signatures(signature):
    sealed = Sealer(SM_DOOR).seal(SM_MATCHER.public(), MessageType.EVENT, b"x", now=NOW)
    forged = sealed[:-SIGNATURE_BYTES] + signature
    assert rejected(lambda: Opener(SM_MATCHER, [SM_DOOR.public()]).open(forged, now=NOW)) is RejectReason.BAD_SIGNATURE
