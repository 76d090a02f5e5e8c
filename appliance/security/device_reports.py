"""The device's own signature over an event it reports (a door decision, an alarm).

The envelope an event travels in is signed by the device too, but it is sealed to the
matcher and gone once opened: nobody can show it to an auditor later. So the door signs the
event itself (its id, kind, original time and details) with its Ed25519 key before sealing
it, the matcher checks that signature against the device's public key, and the audit entry
keeps the signed document with its signature: the chain then proves what the device said,
and when, not only that the centre wrote something down.
"""
from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.security import signing

DOMAIN = b"appliance/device-report/v1|"


def sign(key: signing.Signs, document: dict[str, Any]) -> str:
    """Hex signature of ``document`` (canonical JSON, UTF-8 as it is, under ``DOMAIN``)."""
    return signing.sign_document(key, DOMAIN, document, ascii_only=False)


def verify(key: Ed25519PublicKey, document: dict[str, Any], signature_hex: str) -> bool:
    """True only for the device's signature of exactly ``document``; never raises."""
    return bool(signature_hex) and signing.verify_document(key, DOMAIN, document, signature_hex, ascii_only=False)
