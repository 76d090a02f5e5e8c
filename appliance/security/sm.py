"""The national cryptography primitives (SM2, SM3, SM4-GCM) that the ``sm`` envelope suite uses.

Where they come from, and why:
- SM3 (GB/T 32905) and SM4 (GB/T 32907) in GCM mode (RFC 8998) come from ``cryptography``,
  which the appliance already requires: OpenSSL's implementations, fast and maintained.
- SM2 (GB/T 32918) comes from ``gmalg`` (MIT licence, the ``sm`` extra): a pure-Python library,
  released in 2026 and checked here against the standard's vectors (tests/security/test_sm.py).
  The native alternatives were weighed and left: ``tongsuopy`` (last release 2023, no aarch64
  wheel for a Pi or Jetson, and its SM2 keys refuse ECDH), ``gmssl_pyx`` / ``gmssl-fast``
  (x86_64 wheels only). Pure Python costs speed (tens of SM2 operations per second on a
  desktop CPU; ``appliance bench envelope --suite sm`` measures it) and its big-integer
  arithmetic is not constant-time: a door's SM2 keys are protected like its other keys, on
  a host nobody else runs code on.

SM2 keys are raw 32-byte secrets from the key provider like every other key; any 32 random
bytes are a valid private scalar 1..n-2, or are mapped onto one (odds below 2^-32). Signatures use
the default distinguishing identifier of GM/T 0009 and are ``r || s``, 32 bytes each. A
message key travels SM2-encrypted (GB/T 32918.4: ephemeral-static agreement on the SM2 curve
with the SM3 key-derivation function), in ``C1 || C3 || C2`` order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from appliance.errors import ApplianceError, ErrorCode

EXTRA = "sm"
LIBRARY = "gmalg"
# GM/T 0009-2012 §10: the default user identifier when none is agreed
DEFAULT_UID = b"1234567812345678"
SCALAR_BYTES = 32
PUBLIC_KEY_BYTES = 65  # uncompressed point: 0x04 || x || y
SIGNATURE_BYTES = 2 * SCALAR_BYTES
SM4_KEY_BYTES = 16
GCM_TAG_BYTES = 16
SM3_BYTES = 32
# an SM2-encrypted SM4 key: C1 (a point) || C3 (SM3 digest) || C2 (the key, XORed)
WRAPPED_KEY_BYTES = PUBLIC_KEY_BYTES + SM3_BYTES + SM4_KEY_BYTES
_UNCOMPRESSED = 0x04
# the order n of the SM2 recommended curve (GB/T 32918.5)
CURVE_ORDER = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123


def library():
    """The SM2 library, or DEPENDENCY_MISSING naming the extra that installs it."""
    try:
        import gmalg
    except ImportError:
        raise ApplianceError(ErrorCode.DEPENDENCY_MISSING, f"the SM crypto suite needs {LIBRARY}: "
                             f"pip install 'face-appliance[{EXTRA}]'") from None
    return gmalg


def available() -> bool:
    try:
        library()
    except ApplianceError:
        return False
    return True


def library_version() -> str:
    """'gmalg 1.1.2', or 'not installed' (for reports and the bench)."""
    try:
        return f"{LIBRARY} {library().__version__}"
    except ApplianceError:
        return "not installed"


def sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def key_id(public: bytes, length: int) -> bytes:
    """A short identifier of an SM2 public key (SM3, as the default suite uses SHA-256)."""
    return sm3(public)[:length]


def _scalar(secret: bytes) -> bytes:
    if len(secret) != SCALAR_BYTES:
        raise ApplianceError(ErrorCode.KEY_INVALID, f"an SM2 private key is {SCALAR_BYTES} bytes")
    value = int.from_bytes(secret, "big")
    if not 1 <= value <= CURVE_ORDER - 2:
        value = 1 + value % (CURVE_ORDER - 2)
    return value.to_bytes(SCALAR_BYTES, "big")


def _fixed(value: bytes) -> bytes:
    """gmalg drops leading zero bytes of r and s; the wire format has 32 bytes each."""
    return value.rjust(SCALAR_BYTES, b"\x00")


@dataclass(frozen=True)
class Sm2PublicKey:
    """An SM2 public key as the directory carries it (65 bytes, uncompressed)."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PUBLIC_KEY_BYTES or self.raw[0] != _UNCOMPRESSED:
            raise ApplianceError(ErrorCode.KEY_INVALID, f"an SM2 public key is {PUBLIC_KEY_BYTES} bytes "
                                 "starting with 04")

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True only for a valid SM2 signature of ``data``; never raises on bad input."""
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            checker = library().SM2(pk=self.raw, uid=DEFAULT_UID)
            return bool(checker.verify(data, signature[:SCALAR_BYTES], signature[SCALAR_BYTES:]))
        except ApplianceError:
            raise
        except Exception:  # gmalg raises its own errors for points off the curve and the like
            return False

    def encrypt(self, plain: bytes) -> bytes:
        """SM2 public-key encryption (C1 || C3 || C2) of a short secret such as a message key."""
        return library().SM2(pk=self.raw).encrypt(plain)


@dataclass(frozen=True)
class Sm2PrivateKey:
    """An SM2 private key (from the key provider; never printed)."""

    secret: bytes = field(repr=False)
    public: Sm2PublicKey = field(init=False)

    def __post_init__(self) -> None:
        scalar = _scalar(self.secret)
        object.__setattr__(self, "secret", scalar)
        object.__setattr__(self, "public", Sm2PublicKey(library().SM2().generate_pk(scalar)))

    def sign(self, data: bytes) -> bytes:
        signer = library().SM2(self.secret, DEFAULT_UID, self.public.raw)
        r, s = signer.sign(data)
        return _fixed(r) + _fixed(s)

    def decrypt(self, cipher: bytes) -> bytes:
        """The secret inside an SM2 ciphertext; ValueError when it is not one for this key."""
        try:
            return library().SM2(self.secret).decrypt(cipher)
        except ApplianceError:
            raise
        except Exception as exc:  # gmalg: point not on the curve, hash check failed, ...
            raise ValueError(f"SM2 decryption failed: {type(exc).__name__}") from None


def sm4_gcm_encrypt(key: bytes, nonce: bytes, plain: bytes, aad: bytes) -> bytes:
    """SM4-GCM (RFC 8998): ciphertext || 16-byte tag, like ``AESGCM.encrypt``."""
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    return encryptor.update(plain) + encryptor.finalize() + encryptor.tag


def sm4_gcm_decrypt(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext, or ``InvalidTag`` when anything was changed (like ``AESGCM.decrypt``)."""
    if len(sealed) < GCM_TAG_BYTES:
        raise InvalidTag()
    body, tag = sealed[:-GCM_TAG_BYTES], sealed[-GCM_TAG_BYTES:]
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    return decryptor.update(body) + decryptor.finalize()
