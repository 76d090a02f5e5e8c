"""The liveness evidence for the server's second judgement: a compact summary, signed.

Never images: only cue scores, the motion and challenge results, the decision and its
timestamps. The bytes signed are canonical JSON (sorted keys, no spaces, no NaN, scores
rounded) so the server can verify exactly what the device decided on. Signing and verifying
go through ``appliance.security.signing`` like every signed document; evidence v1 is signed
without a domain prefix (``signing.NO_DOMAIN``: the format predates domains and is kept). The
device signs through a small ``Signer`` interface (the node key, or a local key in tests).
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.errors import ApplianceError, ErrorCode
from appliance.security import signing

EVIDENCE_VERSION = 1
EVIDENCE_DOMAIN = signing.NO_DOMAIN  # v1: the payload alone is signed (see the module docstring)
DIGITS = 4  # scores are rounded: the summary is compact and reveals no more than needed


class Signer(Protocol):
    key_id: str

    def sign(self, data: bytes) -> bytes: ...


class Ed25519Signer:
    """A raw Ed25519 key (``cryptography``); ``generate()`` for tests and first start."""

    def __init__(self, private_bytes: bytes, key_id: str = "node"):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._key = Ed25519PrivateKey.from_private_bytes(private_bytes)
        self.key_id = key_id

    @classmethod
    def generate(cls, key_id: str = "node") -> Ed25519Signer:
        import os

        return cls(os.urandom(32), key_id)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_key_bytes(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _compact(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, DIGITS)
    if isinstance(value, dict):
        return {str(k): _compact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_compact(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _compact(value.item())
    return value


def canonical_json(data: dict) -> bytes:
    """The evidence body: the signing helper's canonical JSON (UTF-8, not ASCII-escaped) of the
    summary with scores rounded to ``DIGITS`` and non-finite numbers as null."""
    return signing.canonical_json(_compact(data), ascii_only=False)


@dataclass(frozen=True)
class SignedEvidence:
    payload: bytes  # canonical JSON of the summary
    signature: bytes
    key_id: str

    @property
    def summary(self) -> dict:
        return json.loads(self.payload)

    def as_dict(self) -> dict:
        """Transport form: the payload and signature base64-encoded."""
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "key_id": self.key_id,
            "alg": "Ed25519",
        }


def from_transport(data: Any) -> SignedEvidence:
    """The inverse of :meth:`SignedEvidence.as_dict`; anything malformed is LIVENESS_FAILED."""
    try:
        return SignedEvidence(base64.b64decode(data["payload"], validate=True),
                              base64.b64decode(data["signature"], validate=True), str(data["key_id"]))
    except (KeyError, TypeError, ValueError):
        raise ApplianceError(ErrorCode.LIVENESS_FAILED, "liveness evidence malformed") from None


def sign_summary(summary: dict, signer: Signer) -> SignedEvidence:
    payload = canonical_json({"version": EVIDENCE_VERSION, **summary})
    return SignedEvidence(payload, signing.sign(signer, EVIDENCE_DOMAIN, payload), signer.key_id)


def verify(evidence: SignedEvidence, public_key: bytes) -> dict:
    """The summary when the signature holds; ``ApplianceError`` otherwise (server side)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
    except (TypeError, ValueError):
        key = None
    if key is None or not signing.verify(key, EVIDENCE_DOMAIN, evidence.payload, evidence.signature):
        raise ApplianceError(ErrorCode.LIVENESS_FAILED, "liveness evidence signature invalid")
    return evidence.summary
