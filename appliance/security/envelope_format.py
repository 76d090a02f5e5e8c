"""The envelope's bytes: message types, ciphers, the header, and parsing that never crashes.

Split from ``envelope`` (sealing and opening) so that each module stays small. Three header
versions: version 1 is the default suite's format since the first release, without a suite
field (its bytes are unchanged, so doors not yet updated keep working); version 2 adds a
suite byte after the prefix (``suites.Suite``), and the key block after the nonce is the
suite's: a 32-byte X25519 public key, or an SM2-encrypted SM4 key. Version 3 is the default
suite's session format (``envelope_session``): the key block is the sender's epoch X25519
public key, followed by the epoch's not-after time and the sender's Ed25519 signature of the
epoch, and no per-message signature follows the ciphertext. The byte layout is in
docs/security.md.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from appliance.errors import ApplianceError, ErrorCode
from appliance.security import sm
from appliance.security.suites import Suite

MAGIC = b"FAEV"
FORMAT_VERSION = 1  # the default suite, no suite field
SUITE_FORMAT_VERSION = 2  # a suite byte follows the prefix
SESSION_FORMAT_VERSION = 3  # the default suite's session format: an epoch block, no per-message signature
KEY_ID_BYTES = 8
NONCE_BYTES = 12
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64  # Ed25519, and SM2 as r || s
MAX_LABEL_BYTES = 64  # sender id, pack id, pack version
# the key block after the nonce: what the recipient needs to recover the message key
KEY_BLOCK_BYTES = {Suite.DEFAULT: PUBLIC_KEY_BYTES, Suite.SM: sm.WRAPPED_KEY_BYTES}
# magic, version, type, aead, sender length
_PREFIX = struct.Struct(">4sBBBB")
# timestamp (ms), counter
_TIME_COUNTER = struct.Struct(">QQ")
LENGTH = struct.Struct(">I")
# the session format's epoch not-after time (ms since the Unix epoch)
NOT_AFTER = struct.Struct(">Q")
_EPOCH_BLOCK = NOT_AFTER.size + SIGNATURE_BYTES  # a session header's not-after and epoch signature
_MIN_LENGTH = (_PREFIX.size + 1 + KEY_ID_BYTES + 2 + _TIME_COUNTER.size + NONCE_BYTES + PUBLIC_KEY_BYTES
               + LENGTH.size + SIGNATURE_BYTES)


class MessageType(Enum):
    TEMPLATE = 1  # an enrolled template going to a device cache
    PROBE = 2  # a probe template from a device to the matcher
    DECISION = 3  # the matcher's pass/fail answer
    TOMBSTONE = 4  # a deletion to propagate
    EVENT = 5  # an access event from a device
    ALARM = 6  # a security alarm from a device (presentation attack, tamper)
    TELEMETRY = 7  # device health figures (never biometric data)
    SYNC = 8  # matcher -> device: enrollment deltas, snapshot pages, outbox acknowledgements
    SYNC_ACK = 9  # device -> matcher: sync requests, applied revisions, cache digests
    CAPTURE_REQUEST = 10  # console -> device: capture an enrollment burst
    CAPTURE_RESULT = 11  # device -> console: the burst's fused template and rejections (never an image)
    WIPE = 12  # matcher -> device being revoked: crypto-shred the cache now
    WIPE_DONE = 13  # device -> matcher: the cache's key and files are gone


class Aead(Enum):
    AES_256_GCM = 1
    CHACHA20_POLY1305 = 2  # for devices without AES instructions (e.g. Raspberry Pi 4)
    SM4_GCM = 3  # the SM suite's (RFC 8998)


SUITE_AEADS = {Suite.DEFAULT: (Aead.AES_256_GCM, Aead.CHACHA20_POLY1305), Suite.SM: (Aead.SM4_GCM,)}


class RejectReason(Enum):
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported version"
    UNKNOWN_SENDER = "unknown sender"
    BAD_SIGNATURE = "bad signature"
    WRONG_RECIPIENT = "wrong recipient"
    STALE_TIMESTAMP = "timestamp outside the window"
    REPLAYED_COUNTER = "counter already seen"
    DECRYPT_FAILED = "decryption failed"
    UNEXPECTED_TYPE = "unexpected message type"
    # the SM suite from or to a node without SM2 keys (in the directory, or here)
    UNSUPPORTED_SUITE = "suite not available between these nodes"
    # a default envelope from a node that declared the SM suite, to a node that has SM2 keys
    DOWNGRADE = "suite downgrade"
    # checked by ``appliance.protocol.inbound.open_on_topic`` for what arrives on a device topic
    TOPIC = "not a device topic"
    SENDER_TOPIC_MISMATCH = "sender is not the topic owner"
    # session format: sealed after its epoch's not-after time
    EPOCH_EXPIRED = "epoch expired"
    # session format: an epoch whose not-after lies further ahead than any epoch may last
    EPOCH_TOO_LONG = "epoch longer than allowed"


class EnvelopeRejected(ApplianceError):
    """An envelope that must not be used; ``reason`` says why (for counters and the log)."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(ErrorCode.ENVELOPE_REJECTED, f"{reason.value}{': ' + detail if detail else ''}")
        self.reason = reason


@dataclass(frozen=True)
class Header:
    version: int
    type: MessageType
    aead: Aead
    sender: str
    recipient_key_id: bytes
    pack_id: str
    pack_version: str
    timestamp_ms: int
    counter: int
    nonce: bytes
    ephemeral: bytes  # the key block: X25519 public key (default) or SM2-encrypted SM4 key (sm)
    suite: Suite = Suite.DEFAULT
    not_after_ms: int = 0  # session format only: the epoch's last valid timestamp
    epoch_signature: bytes = b""  # session format only: the sender's signature of its epoch

    @property
    def session(self) -> bool:
        return self.version == SESSION_FORMAT_VERSION

    def encode(self) -> bytes:
        sender, pack_id, pack_version = (s.encode("utf-8") for s in (self.sender, self.pack_id, self.pack_version))
        for label in (sender, pack_id, pack_version):
            if len(label) > MAX_LABEL_BYTES:
                raise ValueError(f"label longer than {MAX_LABEL_BYTES} bytes")
        suite_field = bytes([self.suite.value]) if self.version == SUITE_FORMAT_VERSION else b""
        epoch = b""
        if self.session:
            if self.suite is not Suite.DEFAULT or len(self.epoch_signature) != SIGNATURE_BYTES:
                raise ValueError("a session header is of the default suite and carries a 64-byte epoch signature")
            epoch = NOT_AFTER.pack(self.not_after_ms) + self.epoch_signature
        return b"".join((
            _PREFIX.pack(MAGIC, self.version, self.type.value, self.aead.value, len(sender)), suite_field, sender,
            self.recipient_key_id,
            bytes([len(pack_id)]), pack_id, bytes([len(pack_version)]), pack_version,
            _TIME_COUNTER.pack(self.timestamp_ms, self.counter), self.nonce, self.ephemeral, epoch,
        ))


def format_version(suite: Suite) -> int:
    """The default suite keeps the version-1 bytes; any other suite needs the suite field."""
    return FORMAT_VERSION if suite is Suite.DEFAULT else SUITE_FORMAT_VERSION


def _need(data: bytes, end: int) -> None:
    """Running past the end is TRUNCATED, never IndexError (one check per run of fixed fields)."""
    if end > len(data):
        raise EnvelopeRejected(RejectReason.TRUNCATED, f"needs {end} bytes, has {len(data)}")


def _label(data: bytes, pos: int) -> tuple[str, int]:
    """A length-prefixed UTF-8 label at ``pos``, and the position after it."""
    _need(data, pos + 1)
    end = pos + 1 + data[pos]
    _need(data, end)
    try:
        return data[pos + 1:end].decode("utf-8"), end
    except UnicodeDecodeError:
        raise EnvelopeRejected(RejectReason.MALFORMED, "label is not UTF-8") from None


def _suite(data: bytes, pos: int, version: int) -> Suite:
    if version in (FORMAT_VERSION, SESSION_FORMAT_VERSION):
        return Suite.DEFAULT
    if version != SUITE_FORMAT_VERSION:
        raise EnvelopeRejected(RejectReason.UNSUPPORTED_VERSION, str(version))
    _need(data, pos + 1)
    try:
        return Suite(data[pos])
    except ValueError:
        raise EnvelopeRejected(RejectReason.MALFORMED, "unknown crypto suite") from None


def parse(data: bytes) -> tuple[Header, int, bytes, bytes]:
    """(header, header length, ciphertext, signature) or EnvelopeRejected; the session format
    has no per-message signature (``b""``): its epoch signature is in the header. Offsets and
    ``struct.unpack_from`` rather than a reader object per field: every request is parsed on
    the matcher's one worker thread (issue 17)."""
    if not isinstance(data, (bytes, bytearray)):
        raise EnvelopeRejected(RejectReason.MALFORMED, "not bytes")
    data = bytes(data)
    if len(data) < _MIN_LENGTH:
        raise EnvelopeRejected(RejectReason.TRUNCATED, f"{len(data)} bytes")
    magic, version, type_value, aead_value, sender_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeRejected(RejectReason.MALFORMED, "not an appliance envelope")
    suite = _suite(data, _PREFIX.size, version)
    pos = _PREFIX.size + (version == SUITE_FORMAT_VERSION)
    try:
        message_type, aead = MessageType(type_value), Aead(aead_value)
    except ValueError:
        raise EnvelopeRejected(RejectReason.MALFORMED, "unknown message type or cipher") from None
    if aead not in SUITE_AEADS[suite]:
        raise EnvelopeRejected(RejectReason.MALFORMED, f"cipher {aead.name} is not of the {suite.label} suite")
    _need(data, pos + sender_len + KEY_ID_BYTES)
    try:
        sender = data[pos:pos + sender_len].decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeRejected(RejectReason.MALFORMED, "sender is not UTF-8") from None
    pos += sender_len
    recipient = data[pos:pos + KEY_ID_BYTES]
    pack_id, pos = _label(data, pos + KEY_ID_BYTES)
    pack_version, pos = _label(data, pos)
    session = version == SESSION_FORMAT_VERSION
    key_block = KEY_BLOCK_BYTES[suite]
    header_length = pos + _TIME_COUNTER.size + NONCE_BYTES + key_block + (_EPOCH_BLOCK if session else 0)
    _need(data, header_length + LENGTH.size)
    timestamp_ms, counter = _TIME_COUNTER.unpack_from(data, pos)
    pos += _TIME_COUNTER.size
    nonce, ephemeral = data[pos:pos + NONCE_BYTES], data[pos + NONCE_BYTES:pos + NONCE_BYTES + key_block]
    not_after_ms, epoch_signature = 0, b""
    if session:
        pos += NONCE_BYTES + key_block
        (not_after_ms,) = NOT_AFTER.unpack_from(data, pos)
        epoch_signature = data[pos + NOT_AFTER.size:header_length]
    (length,) = LENGTH.unpack_from(data, header_length)
    end = header_length + LENGTH.size + length
    _need(data, end + (0 if session else SIGNATURE_BYTES))
    ciphertext = data[header_length + LENGTH.size:end]
    signature = b"" if session else data[end:end + SIGNATURE_BYTES]
    trailing = len(data) - end - len(signature)
    if trailing:
        raise EnvelopeRejected(RejectReason.MALFORMED, f"{trailing} trailing bytes")
    header = Header(version, message_type, aead, sender, recipient, pack_id, pack_version,
                    timestamp_ms, counter, nonce, ephemeral, suite, not_after_ms, epoch_signature)
    return header, header_length, ciphertext, signature
