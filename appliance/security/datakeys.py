"""Per-subject data keys and template encryption: the basis of crypto-shredding.

Each subject's template is encrypted with its own random data key; the data key is stored
only wrapped (AES-256-GCM) by the template-wrap key, in the key vault, which is a separate
file from the biometric store and is not part of its backups. Destroying the wrapped data key
makes every copy of that template - in backups, old disks, device exports - unreadable.
Vectors are serialised as raw little-endian float32, never pickled.
"""
from __future__ import annotations

import secrets

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.keys import KEY_BYTES, SecretKey

NONCE_BYTES = 12
VECTOR_DTYPE = np.dtype("<f4")
_WRAP_DOMAIN = b"appliance/dek-wrap/v1|"
_TEMPLATE_DOMAIN = b"appliance/template/v1|"


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).tobytes()


def decode_vector(data: bytes) -> np.ndarray:
    if len(data) % VECTOR_DTYPE.itemsize:
        raise ValueError("vector bytes are not a whole number of float32 values")
    return np.frombuffer(data, dtype=VECTOR_DTYPE).astype(np.float32)


def new_data_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _aad(domain: bytes, *parts: str) -> bytes:
    return domain + b"|".join(p.encode("utf-8") for p in parts)


def wrap_data_key(kek: SecretKey, subject_id: str, data_key: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(kek.material).encrypt(nonce, data_key, _aad(_WRAP_DOMAIN, subject_id))


def unwrap_data_key(kek: SecretKey, subject_id: str, wrapped: bytes) -> bytes:
    try:
        return AESGCM(kek.material).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                            _aad(_WRAP_DOMAIN, subject_id))
    except InvalidTag:
        raise ApplianceError(ErrorCode.KEY_INVALID, f"data key of {subject_id} does not unwrap") from None


def encrypt_template(data_key: bytes, subject_id: str, pack_id: str, pack_version: str, vector: np.ndarray) -> bytes:
    """Subject and pack are bound as associated data, so a row cannot be moved to another subject."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    aad = _aad(_TEMPLATE_DOMAIN, subject_id, pack_id, pack_version)
    return nonce + AESGCM(data_key).encrypt(nonce, encode_vector(vector), aad)


def decrypt_template(data_key: bytes, subject_id: str, pack_id: str, pack_version: str, sealed: bytes) -> np.ndarray:
    aad = _aad(_TEMPLATE_DOMAIN, subject_id, pack_id, pack_version)
    try:
        return decode_vector(AESGCM(data_key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad))
    except InvalidTag:
        raise ApplianceError(ErrorCode.TEMPLATE_SHREDDED, f"template of {subject_id} does not decrypt") from None
