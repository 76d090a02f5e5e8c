"""One way to sign a document: a domain prefix, canonical bytes, Ed25519.

Every signed document of the product (deletion receipts and reports, backup manifests,
release packages, audit checkpoints, liveness evidence, sync snapshots) is ``domain + body``
signed with a node's Ed25519 key. The domain (``b"appliance/<what>/v<n>|"``) keeps a
signature of one kind from ever being accepted as another. The body is canonical JSON unless
the document defines its own bytes; the options below only exist so that documents signed
before this module keep their exact bytes (the wire and disk formats do not change).

``NO_DOMAIN`` is the one exception to the domain rule, for the two documents whose format was
signed without one before domains were introduced (liveness evidence v1, matcher enrollment
events): their body is a JSON object, so it starts with ``{`` and can never equal a message
of another kind (those start with ``appliance/`` or, for envelopes, ``FAEV``). A new kind of
document always gets a domain.
"""
from __future__ import annotations

import json
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def canonical_json(document: Any, ascii_only: bool = True) -> bytes:
    """Sorted keys, no spaces, no NaN: the same bytes for the same document everywhere."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only,
                      allow_nan=False).encode("utf-8")


NO_DOMAIN = b""


class Signs(Protocol):
    """An Ed25519 private key, or anything that signs like one (a node key held elsewhere)."""

    def sign(self, data: bytes) -> bytes: ...


def signed_bytes(domain: bytes, body: bytes) -> bytes:
    if domain == NO_DOMAIN:
        if not body.startswith(b"{"):
            raise ValueError("only a JSON object may be signed without a domain")
        return body
    if not domain.endswith(b"|"):
        raise ValueError(f"a signing domain ends with '|': {domain!r}")
    return domain + body


def sign(key: Signs, domain: bytes, body: bytes) -> bytes:
    return key.sign(signed_bytes(domain, body))


def verify(key: Ed25519PublicKey, domain: bytes, body: bytes, signature: bytes) -> bool:
    """True only for a valid signature of exactly ``domain + body``; never raises."""
    try:
        key.verify(signature, signed_bytes(domain, body))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def sign_document(key: Signs, domain: bytes, document: Any, ascii_only: bool = True) -> str:
    """The hex signature of a JSON document (what receipts, manifests and reports carry)."""
    return sign(key, domain, canonical_json(document, ascii_only)).hex()


def verify_document(key: Ed25519PublicKey, domain: bytes, document: Any, signature_hex: str,
                    ascii_only: bool = True) -> bool:
    """Like :func:`verify`, never raises: a document read back from disk that has no canonical
    form (NaN, Infinity, a value JSON cannot hold) was not signed by us."""
    try:
        signature = bytes.fromhex(signature_hex)
        body = canonical_json(document, ascii_only)
    except (ValueError, TypeError):
        return False
    return verify(key, domain, body, signature)
