"""Session envelopes (format 3): a sender's asymmetric work once per epoch, not per message.

Per-message envelopes (format 1) cost an X25519 key pair, an agreement and an Ed25519
signature to seal, and a verification and an agreement to open: some 400 µs of a matcher's
CPU per request (issue 17). A session sender keeps an *epoch* X25519 key pair for at most
``EPOCH_LIFETIME_S`` or ``EPOCH_MAX_MESSAGES``, signs once per epoch and recipient a
domain-separated statement (sender id, recipient key id, epoch public key, not-after) with its
node Ed25519 key, and derives the AEAD key from DH(epoch, recipient static) with HKDF. Every
message carries the epoch block (public key, not-after, signature), so the protocol stays
stateless: no handshake, a restarted recipient or another replica of a shared subscription
verifies the statement once and caches the derived cipher (``EpochCache``, bounded LRU). After
the first message of an epoch, sealing and opening each cost one AEAD operation.

Who can make a message that opens: the holder of the epoch private key, whose public half the
sender's node key signed for this recipient, or the holder of the recipient's static agreement
key (the recipient itself, or anyone who stole that key: docs/security.md, threat note).
"""
from __future__ import annotations

import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.security import signing
from appliance.security.envelope_format import MAX_LABEL_BYTES, Aead, EnvelopeRejected, Header, RejectReason

AEAD_KEY_BYTES = 32
AEAD_CLASSES = {Aead.AES_256_GCM: AESGCM, Aead.CHACHA20_POLY1305: ChaCha20Poly1305}
Cipher = AESGCM | ChaCha20Poly1305

# how long one epoch key pair lives: what a key read out of a sender's memory can still be
# used for, and how often a sender signs (once per epoch and recipient); 10 min keeps both small
EPOCH_LIFETIME_S = 600.0
# messages per epoch: random 96-bit GCM nonces stay far below the 2^32 per-key limit of NIST
# SP 800-38D, and a busy matcher still signs only every few minutes
EPOCH_MAX_MESSAGES = 100_000
# a recipient refuses an epoch whose not-after lies more than the lifetime plus this skew
# after its own clock (the replay window's 120 s): a sender cannot make an epoch last longer
EPOCH_CLOCK_SKEW_S = 120.0
# verified epochs a recipient keeps: two overlapping epochs for each of 2,000 doors
SESSION_CACHE_ENTRIES = 4096
MS_PER_S = 1000
EPOCH_DOMAIN = b"appliance/envelope-epoch/v1|"  # signing.py's domain rule: never valid as another document
_NOT_AFTER = struct.Struct(">Q")
_SESSION_INFO = b"appliance/envelope/session/v1|"
# the key of the sender -> recipient direction; another direction would get another label
SENDER_TO_RECIPIENT = b"sender-to-recipient|"


def epoch_statement(sender: str, recipient_key_id: bytes, epoch_public: bytes, not_after_ms: int) -> bytes:
    """The bytes a sender signs once per epoch and recipient (after ``EPOCH_DOMAIN``)."""
    name = sender.encode("utf-8")
    if len(name) > MAX_LABEL_BYTES:
        raise ValueError(f"sender id longer than {MAX_LABEL_BYTES} bytes")
    return bytes([len(name)]) + name + recipient_key_id + epoch_public + _NOT_AFTER.pack(not_after_ms)


def session_cipher(shared: bytes, epoch_public: bytes, recipient_public: bytes, sender: str, aead: Aead) -> Cipher:
    """The AEAD of one (epoch, recipient, cipher): HKDF-SHA256 over DH(epoch, recipient static),
    salted with both public keys, labelled with the direction, the cipher and the sender."""
    info = _SESSION_INFO + SENDER_TO_RECIPIENT + bytes([aead.value]) + sender.encode("utf-8")
    key = HKDF(hashes.SHA256(), AEAD_KEY_BYTES, salt=epoch_public + recipient_public, info=info).derive(shared)
    return AEAD_CLASSES[aead](key)


def check_epoch_time(header: Header, now_ms: int) -> None:
    """A session message sealed within its epoch, under an epoch no longer than any sender may
    make one (judged on the recipient's clock ``now_ms``)."""
    if header.timestamp_ms > header.not_after_ms:
        raise EnvelopeRejected(RejectReason.EPOCH_EXPIRED, f"{header.sender}: sealed "
                               f"{(header.timestamp_ms - header.not_after_ms) / MS_PER_S:.0f} s after its end")
    if header.not_after_ms > now_ms + int((EPOCH_LIFETIME_S + EPOCH_CLOCK_SKEW_S) * MS_PER_S):
        raise EnvelopeRejected(RejectReason.EPOCH_TOO_LONG, header.sender)


@dataclass(frozen=True)
class EpochKeys:
    """What one message of an epoch needs: the epoch block of its header and the cipher."""

    public: bytes
    not_after_ms: int
    signature: bytes
    cipher: Cipher = field(repr=False)


@dataclass
class _Epoch:
    private: X25519PrivateKey = field(repr=False)
    public: bytes
    not_after_ms: int
    messages: int = 0
    recipients: dict[tuple[bytes, Aead], EpochKeys] = field(default_factory=dict, repr=False)


class EpochSealer:
    """A sender's current epoch, renewed when a message's timestamp passes its not-after, when
    it has sealed ``max_messages``, or when its not-after lies more than a lifetime after both
    the message's timestamp and this clock (a clock set back, or one message sealed with a
    future time: recipients would refuse the epoch as too long); an outbox message sealed with
    a past time keeps the current epoch. Per recipient and cipher, the signed statement and
    the derived cipher are made once per epoch. Thread-safe (the threads of a node share it)."""

    def __init__(self, sender: str, signing_key: Ed25519PrivateKey, lifetime_s: float = EPOCH_LIFETIME_S,
                 max_messages: int = EPOCH_MAX_MESSAGES) -> None:
        if lifetime_s <= 0 or max_messages <= 0:
            raise ValueError("an epoch needs a positive lifetime and message budget")
        self.sender = sender
        self._signing = signing_key
        self.lifetime_ms = int(lifetime_s * MS_PER_S)
        self.max_messages = max_messages
        self._epoch: _Epoch | None = None
        self.epochs_started = 0
        self._lock = threading.Lock()

    def keys_for(self, recipient_key_id: bytes, recipient: X25519PublicKey, aead: Aead, timestamp_ms: int) -> EpochKeys:
        """The epoch block and cipher for one message to ``recipient`` sealed at ``timestamp_ms``."""
        latest_ms = max(timestamp_ms, int(time.time() * MS_PER_S)) + self.lifetime_ms
        with self._lock:
            epoch = self._epoch
            if (epoch is None or timestamp_ms > epoch.not_after_ms or epoch.messages >= self.max_messages
                    or epoch.not_after_ms > latest_ms):
                private = X25519PrivateKey.generate()
                epoch = self._epoch = _Epoch(private, private.public_key().public_bytes_raw(),
                                             timestamp_ms + self.lifetime_ms)
                self.epochs_started += 1
            epoch.messages += 1
            keys = epoch.recipients.get((recipient_key_id, aead))
            if keys is None:
                statement = epoch_statement(self.sender, recipient_key_id, epoch.public, epoch.not_after_ms)
                cipher = session_cipher(epoch.private.exchange(recipient), epoch.public, recipient.public_bytes_raw(),
                                        self.sender, aead)
                keys = EpochKeys(epoch.public, epoch.not_after_ms, signing.sign(self._signing, EPOCH_DOMAIN, statement),
                                 cipher)
                epoch.recipients[(recipient_key_id, aead)] = keys
            return keys


class EpochCache:
    """A recipient's verified epochs -> their derived cipher, least recently used evicted.
    Only an epoch whose statement verified is put here; a restarted recipient starts empty
    and verifies again."""

    def __init__(self, entries: int = SESSION_CACHE_ENTRIES) -> None:
        if entries <= 0:
            raise ValueError("the epoch cache needs room for at least one epoch")
        self.entries = entries
        self._ciphers: OrderedDict[tuple, Cipher] = OrderedDict()
        self._lock = threading.Lock()
        self.verified = 0  # statements verified (cache misses that passed)

    def get(self, key: tuple) -> Cipher | None:
        with self._lock:
            cipher = self._ciphers.get(key)
            if cipher is not None:
                self._ciphers.move_to_end(key)
            return cipher

    def put(self, key: tuple, cipher: Cipher) -> None:
        with self._lock:
            self._ciphers[key] = cipher
            self._ciphers.move_to_end(key)
            self.verified += 1
            while len(self._ciphers) > self.entries:
                self._ciphers.popitem(last=False)

    def forget(self, sender: str) -> int:
        """Drop ``sender``'s epochs (its keys changed: what its old key signed opens no more);
        how many were held."""
        with self._lock:
            gone = [key for key in self._ciphers if key[0] == sender]
            for key in gone:
                del self._ciphers[key]
        return len(gone)

    def __len__(self) -> int:
        return len(self._ciphers)
