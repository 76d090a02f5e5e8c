"""Template envelope: what crosses the network is encrypted to the recipient, signed by the
sender, bound to its header, and usable once.

Sealing: a fresh X25519 key pair per message (ephemeral-static agreement with the
recipient's key) -> HKDF-SHA256 -> AES-256-GCM or ChaCha20-Poly1305 with the whole header as
associated data -> Ed25519 signature over header and ciphertext. Opening checks, in order:
format, known sender, signature, recipient, timestamp window, counter not seen before, and
decryption; any failure raises :class:`EnvelopeRejected` with a specific
:class:`RejectReason`, and never any other exception. The byte layout is in docs/security.md.
"""
from __future__ import annotations

import hashlib
import secrets
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.keys import NODE_AGREEMENT, NODE_SIGNING, KeyProvider

MAGIC = b"FAEV"
FORMAT_VERSION = 1
KEY_ID_BYTES = 8
NONCE_BYTES = 12
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
AEAD_KEY_BYTES = 32
MAX_LABEL_BYTES = 64  # sender id, pack id, pack version
DEFAULT_REPLAY_WINDOW_S = 120.0
COUNTER_WINDOW = 1024  # counters this far below the highest seen are still accepted once
MS_PER_S = 1000
US_PER_S = 1_000_000
_HKDF_INFO = b"appliance/envelope/v1"
# magic, version, type, aead, sender length
_PREFIX = struct.Struct(">4sBBBB")
# timestamp (ms), counter
_TIME_COUNTER = struct.Struct(">QQ")
_LENGTH = struct.Struct(">I")
_MIN_LENGTH = (_PREFIX.size + 1 + KEY_ID_BYTES + 2 + _TIME_COUNTER.size + NONCE_BYTES + PUBLIC_KEY_BYTES
               + _LENGTH.size + SIGNATURE_BYTES)


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


class Aead(Enum):
    AES_256_GCM = 1
    CHACHA20_POLY1305 = 2  # for devices without AES instructions (e.g. Raspberry Pi 4)


_AEAD_CLASSES = {Aead.AES_256_GCM: AESGCM, Aead.CHACHA20_POLY1305: ChaCha20Poly1305}


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
    # checked by ``appliance.protocol.inbound.open_on_topic`` for what arrives on a device topic
    TOPIC = "not a device topic"
    SENDER_TOPIC_MISMATCH = "sender is not the topic owner"


class EnvelopeRejected(ApplianceError):
    """An envelope that must not be used; ``reason`` says why (for counters and the log)."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(ErrorCode.ENVELOPE_REJECTED, f"{reason.value}{': ' + detail if detail else ''}")
        self.reason = reason


def key_id(public: X25519PublicKey) -> bytes:
    return hashlib.sha256(public.public_bytes_raw()).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True)
class PeerKeys:
    """The public half of a node: what others need to seal to it and to check its signatures."""

    node_id: str
    signing: Ed25519PublicKey
    agreement: X25519PublicKey

    @property
    def key_id(self) -> bytes:
        return key_id(self.agreement)


@dataclass(frozen=True)
class NodeKeys:
    """A node's private keys (from the key provider; never printed)."""

    node_id: str
    signing: Ed25519PrivateKey = field(repr=False)
    agreement: X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, node_id: str) -> "NodeKeys":
        return cls(node_id, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_provider(cls, node_id: str, keys: KeyProvider) -> "NodeKeys":
        return cls(node_id, Ed25519PrivateKey.from_private_bytes(keys.get(NODE_SIGNING).material),
                   X25519PrivateKey.from_private_bytes(keys.get(NODE_AGREEMENT).material))

    def public(self) -> PeerKeys:
        return PeerKeys(self.node_id, self.signing.public_key(), self.agreement.public_key())


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
    ephemeral: bytes

    def encode(self) -> bytes:
        sender, pack_id, pack_version = (s.encode("utf-8") for s in (self.sender, self.pack_id, self.pack_version))
        for label in (sender, pack_id, pack_version):
            if len(label) > MAX_LABEL_BYTES:
                raise ValueError(f"label longer than {MAX_LABEL_BYTES} bytes")
        return b"".join((
            _PREFIX.pack(MAGIC, self.version, self.type.value, self.aead.value, len(sender)), sender,
            self.recipient_key_id,
            bytes([len(pack_id)]), pack_id, bytes([len(pack_version)]), pack_version,
            _TIME_COUNTER.pack(self.timestamp_ms, self.counter), self.nonce, self.ephemeral,
        ))


@dataclass(frozen=True)
class Opened:
    header: Header
    payload: bytes


class _Reader:
    """Bounds-checked reads: running past the end is TRUNCATED, never IndexError."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise EnvelopeRejected(RejectReason.TRUNCATED, f"needs {self.pos + n} bytes, has {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def label(self) -> str:
        raw = self.take(self.take(1)[0])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EnvelopeRejected(RejectReason.MALFORMED, "label is not UTF-8") from None


def _parse(data: bytes) -> tuple[Header, int, bytes, bytes]:
    """(header, header length, ciphertext, signature) or EnvelopeRejected."""
    if not isinstance(data, (bytes, bytearray)):
        raise EnvelopeRejected(RejectReason.MALFORMED, "not bytes")
    data = bytes(data)
    if len(data) < _MIN_LENGTH:
        raise EnvelopeRejected(RejectReason.TRUNCATED, f"{len(data)} bytes")
    reader = _Reader(data)
    magic, version, type_value, aead_value, sender_len = _PREFIX.unpack(reader.take(_PREFIX.size))
    if magic != MAGIC:
        raise EnvelopeRejected(RejectReason.MALFORMED, "not an appliance envelope")
    if version != FORMAT_VERSION:
        raise EnvelopeRejected(RejectReason.UNSUPPORTED_VERSION, str(version))
    try:
        message_type, aead = MessageType(type_value), Aead(aead_value)
    except ValueError:
        raise EnvelopeRejected(RejectReason.MALFORMED, "unknown message type or cipher") from None
    try:
        sender = reader.take(sender_len).decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeRejected(RejectReason.MALFORMED, "sender is not UTF-8") from None
    recipient = reader.take(KEY_ID_BYTES)
    pack_id, pack_version = reader.label(), reader.label()
    timestamp_ms, counter = _TIME_COUNTER.unpack(reader.take(_TIME_COUNTER.size))
    nonce, ephemeral = reader.take(NONCE_BYTES), reader.take(PUBLIC_KEY_BYTES)
    header_length = reader.pos
    (length,) = _LENGTH.unpack(reader.take(_LENGTH.size))
    ciphertext = reader.take(length)
    signature = reader.take(SIGNATURE_BYTES)
    if reader.pos != len(data):
        raise EnvelopeRejected(RejectReason.MALFORMED, f"{len(data) - reader.pos} trailing bytes")
    header = Header(version, message_type, aead, sender, recipient, pack_id, pack_version,
                    timestamp_ms, counter, nonce, ephemeral)
    return header, header_length, ciphertext, signature


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), AEAD_KEY_BYTES, salt=ephemeral + recipient, info=_HKDF_INFO).derive(shared)


class Sealer:
    """Seals messages from one node. The counter starts at the current time in microseconds,
    so it keeps increasing across restarts without being stored (rate < 1 M messages/s)."""

    def __init__(self, keys: NodeKeys, aead: Aead = Aead.AES_256_GCM, counter_start: int | None = None) -> None:
        self.keys = keys
        self.aead = aead
        self.counter = int(time.time() * US_PER_S) if counter_start is None else counter_start
        self._lock = threading.Lock()  # threads of one node share one counter sequence

    def seal(self, recipient: PeerKeys, message_type: MessageType, payload: bytes,
             pack_id: str = "", pack_version: str = "", now: float | None = None) -> bytes:
        with self._lock:
            self.counter += 1
            counter = self.counter
        ephemeral = X25519PrivateKey.generate()
        ephemeral_public = ephemeral.public_key().public_bytes_raw()
        recipient_public = recipient.agreement.public_bytes_raw()
        nonce = secrets.token_bytes(NONCE_BYTES)
        header = Header(FORMAT_VERSION, message_type, self.aead, self.keys.node_id, recipient.key_id,
                        pack_id, pack_version, int((time.time() if now is None else now) * MS_PER_S),
                        counter, nonce, ephemeral_public).encode()
        key = _derive(ephemeral.exchange(recipient.agreement), ephemeral_public, recipient_public)
        ciphertext = _AEAD_CLASSES[self.aead](key).encrypt(nonce, payload, header)
        body = header + _LENGTH.pack(len(ciphertext)) + ciphertext
        return body + self.keys.signing.sign(body)


class ReplayGuard:
    """Per-sender counters seen recently (a sliding window, as IPsec does), so a message is
    accepted once even if the transport reorders a few.

    The state lives in memory. After a restart, a receiver either restores it
    (:meth:`state` / :meth:`from_state`, e.g. kept in its encrypted store) or passes
    ``not_before`` = its start time: messages sealed before then are refused, since nothing
    proves they were not already accepted by the previous process.
    """

    def __init__(self, window: int = COUNTER_WINDOW, not_before: float | None = None) -> None:
        self.window = window
        self.not_before_ms = None if not_before is None else int(not_before * MS_PER_S)
        self._highest: dict[str, int] = {}
        self._seen: dict[str, set[int]] = {}

    def state(self) -> dict[str, list[int]]:
        """JSON-ready counters seen per sender (to persist across restarts)."""
        return {sender: sorted(seen) for sender, seen in self._seen.items()}

    @classmethod
    def from_state(cls, state: dict[str, list[int]], window: int = COUNTER_WINDOW) -> "ReplayGuard":
        guard = cls(window)
        for sender, counters in state.items():
            for counter in counters:
                guard.record(sender, int(counter))
        return guard

    def check_time(self, sender: str, timestamp_ms: int) -> None:
        if self.not_before_ms is not None and timestamp_ms < self.not_before_ms:
            raise EnvelopeRejected(RejectReason.REPLAYED_COUNTER, f"{sender}: sealed before this receiver started")

    def check(self, sender: str, counter: int) -> None:
        highest = self._highest.get(sender)
        if highest is not None and (counter <= highest - self.window or counter in self._seen[sender]):
            raise EnvelopeRejected(RejectReason.REPLAYED_COUNTER, f"{sender} #{counter}")

    def record(self, sender: str, counter: int) -> None:
        seen = self._seen.setdefault(sender, set())
        seen.add(counter)
        highest = max(self._highest.get(sender, counter), counter)
        self._highest[sender] = highest
        if len(seen) > self.window:
            self._seen[sender] = {c for c in seen if c > highest - self.window}


class Opener:
    """Opens envelopes addressed to one node from a fixed set of known senders."""

    def __init__(self, keys: NodeKeys, senders: list[PeerKeys], window_s: float = DEFAULT_REPLAY_WINDOW_S,
                 guard: ReplayGuard | None = None) -> None:
        self.keys = keys
        self.key_id = key_id(keys.agreement.public_key())
        self.recipient_public = keys.agreement.public_key().public_bytes_raw()
        self.senders = {peer.node_id: peer for peer in senders}
        self.window_ms = int(window_s * MS_PER_S)
        self.guard = guard or ReplayGuard()
        self.rejections: Counter[RejectReason] = Counter()

    def open(self, data: bytes, expect: MessageType | None = None, now: float | None = None) -> Opened:
        try:
            return self._open(data, expect, now)
        except EnvelopeRejected as exc:
            self.rejections[exc.reason] += 1
            raise

    def _open(self, data: bytes, expect: MessageType | None, now: float | None) -> Opened:
        header, header_length, ciphertext, signature = _parse(data)
        peer = self.senders.get(header.sender)
        if peer is None:
            raise EnvelopeRejected(RejectReason.UNKNOWN_SENDER, header.sender)
        try:
            peer.signing.verify(signature, bytes(data[:-SIGNATURE_BYTES]))
        except InvalidSignature:
            raise EnvelopeRejected(RejectReason.BAD_SIGNATURE, header.sender) from None
        if header.recipient_key_id != self.key_id:
            raise EnvelopeRejected(RejectReason.WRONG_RECIPIENT, header.recipient_key_id.hex())
        now_ms = int((time.time() if now is None else now) * MS_PER_S)
        if abs(now_ms - header.timestamp_ms) > self.window_ms:
            raise EnvelopeRejected(RejectReason.STALE_TIMESTAMP, f"{(now_ms - header.timestamp_ms) / MS_PER_S:.0f} s")
        if expect is not None and header.type is not expect:
            raise EnvelopeRejected(RejectReason.UNEXPECTED_TYPE, header.type.name)
        self.guard.check_time(header.sender, header.timestamp_ms)
        self.guard.check(header.sender, header.counter)
        try:
            shared = self.keys.agreement.exchange(X25519PublicKey.from_public_bytes(header.ephemeral))
            key = _derive(shared, header.ephemeral, self.recipient_public)
            payload = _AEAD_CLASSES[header.aead](key).decrypt(header.nonce, ciphertext, bytes(data[:header_length]))
        except (InvalidTag, ValueError):
            raise EnvelopeRejected(RejectReason.DECRYPT_FAILED, header.sender) from None
        self.guard.record(header.sender, header.counter)
        return Opened(header, payload)
