"""Template envelope: what crosses the network is encrypted to the recipient, signed by the
sender, bound to its header, and usable once.

Sealing with the default suite, session format (3, the default since issue 17,
``envelope_session``): the sender's epoch X25519 key, signed once per epoch and recipient ->
DH with the recipient's key -> HKDF-SHA256 -> AES-256-GCM or ChaCha20-Poly1305 with the whole
header (epoch block included) as associated data; no per-message signature. Per-message format
(1, still opened, and sealed with ``Sealer(session=False)``): a fresh X25519 key pair per message
(ephemeral-static agreement with the recipient's key) -> HKDF-SHA256 -> AEAD with the header as
associated data -> Ed25519 signature over header and ciphertext. With the SM
suite (``appliance.security.suites``): a fresh SM4 key, SM2-encrypted to the recipient's SM2
key -> SM4-GCM with the header as associated data -> SM2 signature. The header names the suite
(``envelope_format``). Opening checks, in order: format, known sender, the suite between
these two nodes, signature, recipient, timestamp window, counter not seen before, and
decryption (a session envelope: its epoch statement once per epoch, decryption, timestamp
window, type, the epoch's not-after, counter); any failure raises :class:`EnvelopeRejected`
with a specific :class:`RejectReason`, and never any other exception. The byte layout is in
docs/security.md.
"""
from __future__ import annotations

import functools
import hashlib
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import ApplianceError, ErrorCode
from appliance.security import signing, sm
from appliance.security.envelope_format import (
    KEY_ID_BYTES, LENGTH, MAGIC, NONCE_BYTES, SESSION_FORMAT_VERSION, SIGNATURE_BYTES, Aead, EnvelopeRejected, Header,
    MessageType, SUITE_AEADS, RejectReason, format_version, parse,
)
from appliance.security.envelope_session import (
    AEAD_CLASSES, AEAD_KEY_BYTES, EPOCH_DOMAIN, EPOCH_LIFETIME_S, EPOCH_MAX_MESSAGES, SESSION_CACHE_ENTRIES, Cipher,
    EpochCache, EpochSealer, check_epoch_time, epoch_statement, session_cipher,
)
from appliance.security.keys import (
    KEY_BYTES, NODE_AGREEMENT, NODE_SIGNING, NODE_SM2_AGREEMENT, NODE_SM2_SIGNING, SM2_KEYS, KeyProvider, ensure_keys,
)
from appliance.security.nonces import NONCES
from appliance.security.sm import Sm2PrivateKey, Sm2PublicKey
from appliance.security.suites import Suite

DEFAULT_REPLAY_WINDOW_S = 120.0
COUNTER_WINDOW = 1024  # counters this far below the highest seen are still accepted once
PRUNE_AT_WINDOWS = 2  # a sender's seen counters are pruned back to one window when they fill this many
MS_PER_S = 1000
US_PER_S = 1_000_000
_HKDF_INFO = b"appliance/envelope/v1"
__all__ = ["MAGIC", "SIGNATURE_BYTES", "Aead", "EnvelopeRejected", "Header", "MessageType", "RejectReason",
           "Suite", "COUNTER_WINDOW", "NodeKeys", "Opened", "Opener", "PeerKeys", "ReplayGuard", "Sealer", "Sm2Keys",
           "Sm2Public", "key_id"]


def key_id(public: X25519PublicKey) -> bytes:
    return hashlib.sha256(public.public_bytes_raw()).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True)
class Sm2Public:
    """A node's SM2 public keys (as the directory carries them): one signs, one is sealed to."""

    signing: Sm2PublicKey
    agreement: Sm2PublicKey

    @property
    def key_id(self) -> bytes:
        return sm.key_id(self.agreement.raw, KEY_ID_BYTES)


@dataclass(frozen=True)
class Sm2Keys:
    """A node's SM2 private keys, beside its default ones (separate signing and encryption key
    pairs, as GM/T 0003 and the GM/T 0015 certificates keep them)."""

    signing: Sm2PrivateKey = field(repr=False)
    agreement: Sm2PrivateKey = field(repr=False)

    @classmethod
    def from_provider(cls, keys: KeyProvider) -> "Sm2Keys":
        return cls(Sm2PrivateKey(keys.get(NODE_SM2_SIGNING).material),
                   Sm2PrivateKey(keys.get(NODE_SM2_AGREEMENT).material))

    def public(self) -> Sm2Public:
        return Sm2Public(self.signing.public, self.agreement.public)


@dataclass(frozen=True)
class PeerKeys:
    """The public half of a node: what others need to seal to it and to check its signatures;
    ``sm2`` and ``suite`` when it has SM2 keys and which suite it declared it seals with."""

    node_id: str
    signing: Ed25519PublicKey
    agreement: X25519PublicKey
    sm2: Sm2Public | None = None
    suite: Suite = Suite.DEFAULT

    @functools.cached_property  # a hash of the key, asked by every seal to this node (the object is frozen)
    def key_id(self) -> bytes:
        return key_id(self.agreement)


@dataclass(frozen=True)
class NodeKeys:
    """A node's private keys (from the key provider; never printed) and the suite it seals with."""

    node_id: str
    signing: Ed25519PrivateKey = field(repr=False)
    agreement: X25519PrivateKey = field(repr=False)
    sm2: Sm2Keys | None = field(default=None, repr=False)
    suite: Suite = Suite.DEFAULT

    def __post_init__(self) -> None:
        if self.suite is Suite.SM and self.sm2 is None:
            raise ApplianceError(ErrorCode.KEY_MISSING, f"{self.node_id}: the SM suite needs SM2 keys")

    @classmethod
    def generate(cls, node_id: str, suite: Suite = Suite.DEFAULT) -> "NodeKeys":
        sm2 = None if suite is Suite.DEFAULT else Sm2Keys(Sm2PrivateKey(secrets.token_bytes(KEY_BYTES)),
                                                         Sm2PrivateKey(secrets.token_bytes(KEY_BYTES)))
        return cls(node_id, Ed25519PrivateKey.generate(), X25519PrivateKey.generate(), sm2, suite)

    @classmethod
    def from_provider(cls, node_id: str, keys: KeyProvider, suite: Suite | str = Suite.DEFAULT) -> "NodeKeys":
        """The node's keys. With the SM suite, SM2 keys are created beside the others when they
        are missing; SM2 keys a provider holds are loaded whatever the suite (so the node still
        opens SM envelopes after going back to the default suite), which needs the ``sm`` extra."""
        suite = Suite.named(suite) if isinstance(suite, str) else suite
        if suite is Suite.SM:
            sm.library()  # DEPENDENCY_MISSING before any key is written
            ensure_keys(keys, SM2_KEYS)
        sm2 = Sm2Keys.from_provider(keys) if all(keys.exists(name) for name in SM2_KEYS) else None
        return cls(node_id, Ed25519PrivateKey.from_private_bytes(keys.get(NODE_SIGNING).material),
                   X25519PrivateKey.from_private_bytes(keys.get(NODE_AGREEMENT).material), sm2, suite)

    def renamed(self, node_id: str) -> "NodeKeys":
        """The same keys under another name (a matcher replica, a console)."""
        return replace(self, node_id=node_id)

    def public(self) -> PeerKeys:
        return PeerKeys(self.node_id, self.signing.public_key(), self.agreement.public_key(),
                        None if self.sm2 is None else self.sm2.public(), self.suite)


@dataclass(frozen=True)
class Opened:
    header: Header
    payload: bytes


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), AEAD_KEY_BYTES, salt=ephemeral + recipient, info=_HKDF_INFO).derive(shared)


class Sealer:
    """Seals messages from one node. The counter starts at the current time in microseconds,
    so it keeps increasing across restarts without being stored (rate < 1 M messages/s); it
    runs on across epochs, so one replay window per sender covers every epoch.

    The suite is the node's (``keys.suite``) when the recipient can open it: a node on the SM
    suite seals to a recipient without SM2 keys with the default suite (``suites``). The
    default suite seals the session format (``session=True``; ``False``: per-message format 1,
    what nodes before issue 17 send); the SM suite keeps its per-message format 2."""

    def __init__(self, keys: NodeKeys, aead: Aead = Aead.AES_256_GCM, counter_start: int | None = None,
                 session: bool = True, epoch_lifetime_s: float = EPOCH_LIFETIME_S,
                 epoch_messages: int = EPOCH_MAX_MESSAGES) -> None:
        if aead not in SUITE_AEADS[Suite.DEFAULT]:
            raise ValueError(f"{aead.name} is not a cipher of the default suite (the SM suite uses SM4-GCM)")
        if epoch_lifetime_s > EPOCH_LIFETIME_S:
            raise ValueError(f"recipients refuse epochs longer than {EPOCH_LIFETIME_S:.0f} s")
        self.keys = keys
        self.aead = aead  # the default suite's cipher; the SM suite always uses SM4-GCM
        self.counter = int(time.time() * US_PER_S) if counter_start is None else counter_start
        self._lock = threading.Lock()  # threads of one node share one counter sequence
        self.epochs = EpochSealer(keys.node_id, keys.signing, epoch_lifetime_s, epoch_messages) if session else None

    def suite_for(self, recipient: PeerKeys) -> Suite:
        return Suite.SM if self.keys.suite is Suite.SM and recipient.sm2 is not None else Suite.DEFAULT

    def seal(self, recipient: PeerKeys, message_type: MessageType, payload: bytes,
             pack_id: str = "", pack_version: str = "", now: float | None = None) -> bytes:
        with self._lock:
            self.counter += 1
            counter = self.counter
        suite = self.suite_for(recipient)
        nonce = NONCES.take(NONCE_BYTES)  # OS randomness a page at a time (security.nonces)
        timestamp_ms = int((time.time() if now is None else now) * MS_PER_S)
        if suite is Suite.SM:
            assert self.keys.sm2 is not None and recipient.sm2 is not None  # suite_for checked both
            key = secrets.token_bytes(sm.SM4_KEY_BYTES)
            header = Header(format_version(suite), message_type, Aead.SM4_GCM, self.keys.node_id,
                            recipient.sm2.key_id, pack_id, pack_version, timestamp_ms, counter, nonce,
                            recipient.sm2.agreement.encrypt(key), suite).encode()
            ciphertext = sm.sm4_gcm_encrypt(key, nonce, payload, header)
            body = header + LENGTH.pack(len(ciphertext)) + ciphertext
            return body + self.keys.sm2.signing.sign(body)
        if self.epochs is not None:
            recipient_key_id = recipient.key_id
            epoch = self.epochs.keys_for(recipient_key_id, recipient.agreement, self.aead, timestamp_ms)
            header = Header(SESSION_FORMAT_VERSION, message_type, self.aead, self.keys.node_id, recipient_key_id,
                            pack_id, pack_version, timestamp_ms, counter, nonce, epoch.public, Suite.DEFAULT,
                            epoch.not_after_ms, epoch.signature).encode()
            ciphertext = epoch.cipher.encrypt(nonce, payload, header)
            return header + LENGTH.pack(len(ciphertext)) + ciphertext
        ephemeral = X25519PrivateKey.generate()
        ephemeral_public = ephemeral.public_key().public_bytes_raw()
        recipient_public = recipient.agreement.public_bytes_raw()
        header = Header(format_version(suite), message_type, self.aead, self.keys.node_id, recipient.key_id,
                        pack_id, pack_version, timestamp_ms, counter, nonce, ephemeral_public).encode()
        key = _derive(ephemeral.exchange(recipient.agreement), ephemeral_public, recipient_public)
        ciphertext = AEAD_CLASSES[self.aead](key).encrypt(nonce, payload, header)
        body = header + LENGTH.pack(len(ciphertext)) + ciphertext
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
        # ``check`` refuses anything at or below ``highest - window`` by itself, so counters down
        # there may stay a while: pruned once the set holds two windows, once per window's worth of
        # records (pruning at one window rebuilt the set on every record once a sender had sent
        # ``window`` messages: ~70 us per request for a door's life, issue 17)
        if len(seen) > PRUNE_AT_WINDOWS * self.window:
            self._seen[sender] = {c for c in seen if c > highest - self.window}


class Opener:
    """Opens envelopes addressed to one node from a fixed set of known senders, in either suite
    (``appliance.security.suites`` says which one is expected between two nodes)."""

    def __init__(self, keys: NodeKeys, senders: list[PeerKeys], window_s: float = DEFAULT_REPLAY_WINDOW_S,
                 guard: ReplayGuard | None = None, session_cache_entries: int = SESSION_CACHE_ENTRIES) -> None:
        self.keys = keys
        self.key_id = key_id(keys.agreement.public_key())
        self.sm_key_id = None if keys.sm2 is None else keys.sm2.public().key_id
        self.recipient_public = keys.agreement.public_key().public_bytes_raw()
        self.senders = {peer.node_id: peer for peer in senders}
        self.window_ms = int(window_s * MS_PER_S)
        self.guard = guard or ReplayGuard()
        self.rejections: Counter[RejectReason] = Counter()
        self.epochs = EpochCache(session_cache_entries)  # verified session epochs of the senders

    def add_senders(self, senders: list[PeerKeys]) -> None:
        """Open envelopes from these senders too (or with these keys, for one already known: the
        epochs its old key signed are forgotten, else they would open for the rest of their
        lifetime - a re-key after a stolen key must cut those sessions too)."""
        for peer in senders:
            known = self.senders.get(peer.node_id)
            self.senders[peer.node_id] = peer
            if known is not None and known != peer:
                self.epochs.forget(peer.node_id)

    def open(self, data: bytes, expect: MessageType | None = None, now: float | None = None) -> Opened:
        try:
            return self._open(data, expect, now)
        except EnvelopeRejected as exc:
            self.rejections[exc.reason] += 1
            raise

    def _check_suite(self, header: Header, peer: PeerKeys) -> None:
        if peer.suite is Suite.SM and peer.sm2 is not None and self.keys.sm2 is not None:
            raise EnvelopeRejected(RejectReason.DOWNGRADE, f"{header.sender} declared the SM suite")

    def _authenticate(self, header: Header, peer: PeerKeys, data: bytes, signature: bytes) -> None:
        """The sender's signature in the envelope's suite, and the recipient key it names."""
        signed = bytes(data[:-SIGNATURE_BYTES])
        if header.suite is Suite.SM:
            if peer.sm2 is None or self.keys.sm2 is None:
                raise EnvelopeRejected(RejectReason.UNSUPPORTED_SUITE, f"{header.sender}: no SM2 keys "
                                       f"{'in the directory' if peer.sm2 is None else 'on this node'}")
            if not peer.sm2.signing.verify(signature, signed):
                raise EnvelopeRejected(RejectReason.BAD_SIGNATURE, header.sender)
            expected_recipient = self.sm_key_id
        else:
            try:
                peer.signing.verify(signature, signed)
            except InvalidSignature:
                raise EnvelopeRejected(RejectReason.BAD_SIGNATURE, header.sender) from None
            self._check_suite(header, peer)
            expected_recipient = self.key_id
        if header.recipient_key_id != expected_recipient:
            raise EnvelopeRejected(RejectReason.WRONG_RECIPIENT, header.recipient_key_id.hex())

    def _decrypt(self, header: Header, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            if header.suite is Suite.SM:
                assert self.keys.sm2 is not None  # _authenticate checked it
                key = self.keys.sm2.agreement.decrypt(header.ephemeral)
                return sm.sm4_gcm_decrypt(key, header.nonce, ciphertext, aad)
            shared = self.keys.agreement.exchange(X25519PublicKey.from_public_bytes(header.ephemeral))
            key = _derive(shared, header.ephemeral, self.recipient_public)
            return AEAD_CLASSES[header.aead](key).decrypt(header.nonce, ciphertext, aad)
        except (InvalidTag, ValueError):
            raise EnvelopeRejected(RejectReason.DECRYPT_FAILED, header.sender) from None

    def _epoch_cipher(self, header: Header, peer: PeerKeys) -> Cipher:
        """The session envelope's cipher: from the cache, or after verifying the sender's signed
        epoch statement (then cached). Same reasons as the per-message format's checks."""
        cache_key = (header.sender, header.recipient_key_id, header.ephemeral, header.not_after_ms,
                     header.epoch_signature, header.aead)
        cipher = self.epochs.get(cache_key)
        if cipher is not None:
            return cipher
        statement = epoch_statement(header.sender, header.recipient_key_id, header.ephemeral, header.not_after_ms)
        if not signing.verify(peer.signing, EPOCH_DOMAIN, statement, header.epoch_signature):
            raise EnvelopeRejected(RejectReason.BAD_SIGNATURE, f"{header.sender}: epoch statement")
        self._check_suite(header, peer)
        if header.recipient_key_id != self.key_id:
            raise EnvelopeRejected(RejectReason.WRONG_RECIPIENT, header.recipient_key_id.hex())
        try:
            shared = self.keys.agreement.exchange(X25519PublicKey.from_public_bytes(header.ephemeral))
        except ValueError:  # a low-order point: no shared secret
            raise EnvelopeRejected(RejectReason.DECRYPT_FAILED, header.sender) from None
        cipher = session_cipher(shared, header.ephemeral, self.recipient_public, header.sender, header.aead)
        self.epochs.put(cache_key, cipher)
        return cipher

    def _open_session(self, data: bytes, header: Header, header_length: int, ciphertext: bytes,
                      peer: PeerKeys) -> bytes:
        """A session envelope's payload once its epoch and AEAD tag hold (the tag authenticates the
        header: timestamp, counter and type are the sender's before they are judged)."""
        cipher = self._epoch_cipher(header, peer)
        try:
            return cipher.decrypt(header.nonce, ciphertext, bytes(data[:header_length]))
        except InvalidTag:
            raise EnvelopeRejected(RejectReason.DECRYPT_FAILED, header.sender) from None

    def _open(self, data: bytes, expect: MessageType | None, now: float | None) -> Opened:
        header, header_length, ciphertext, signature = parse(data)
        peer = self.senders.get(header.sender)
        if peer is None:
            raise EnvelopeRejected(RejectReason.UNKNOWN_SENDER, header.sender)
        now_ms = int((time.time() if now is None else now) * MS_PER_S)
        payload = None
        if header.session:
            payload = self._open_session(data, header, header_length, ciphertext, peer)
        else:
            self._authenticate(header, peer, data, signature)
        if abs(now_ms - header.timestamp_ms) > self.window_ms:
            raise EnvelopeRejected(RejectReason.STALE_TIMESTAMP, f"{(now_ms - header.timestamp_ms) / MS_PER_S:.0f} s")
        if expect is not None and header.type is not expect:
            raise EnvelopeRejected(RejectReason.UNEXPECTED_TYPE, header.type.name)
        if header.session:
            check_epoch_time(header, now_ms)
        self.guard.check_time(header.sender, header.timestamp_ms)
        self.guard.check(header.sender, header.counter)
        if payload is None:
            payload = self._decrypt(header, ciphertext, bytes(data[:header_length]))
        self.guard.record(header.sender, header.counter)
        return Opened(header, payload)
