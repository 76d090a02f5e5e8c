"""TOTP (RFC 6238): the administrators' second factor, on ``cryptography``'s HOTP/TOTP.

The RFC arithmetic (HMAC, dynamic truncation) comes from ``cryptography``, already a
dependency for every key in the appliance; this module adds what the library leaves to its
caller: base32 secrets as authenticator apps take them, one step of clock drift either side
of now, and single use - the caller stores the last accepted step, and only a later one is
accepted. The RFC's own test vectors pin the result (tests/ops/test_accounts.py).
"""
from __future__ import annotations

import base64
import hmac
import secrets
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.twofactor.hotp import HOTP
from cryptography.hazmat.primitives.twofactor.totp import TOTP

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1
SECRET_BYTES = 20  # 160 bits, the RFC 4226 recommendation for HMAC-SHA1
ALGORITHMS = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256, "SHA512": hashes.SHA512}


def new_secret() -> str:
    """A random base32 secret (what authenticator apps take), without padding."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def _key(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def hotp(key: bytes, counter: int, digits: int = DIGITS, algorithm: str = "SHA1") -> str:
    """RFC 4226 HOTP: dynamic truncation of HMAC(key, counter)."""
    return HOTP(key, digits, ALGORITHMS[algorithm]()).generate(counter).decode("ascii")


def step_at(when: float, step_s: int = STEP_S) -> int:
    return int(when // step_s)


def totp(secret: str, when: float | None = None, digits: int = DIGITS, algorithm: str = "SHA1",
         step_s: int = STEP_S) -> str:
    generator = TOTP(_key(secret), digits, ALGORITHMS[algorithm](), step_s)
    return generator.generate(time.time() if when is None else when).decode("ascii")


def matching_step(secret: str, code: str, when: float, after_step: int = -1) -> int | None:
    """The time step whose code equals ``code`` (within the drift window and later than
    ``after_step``, the last one used), or None. Every step is compared, in constant time."""
    if not (code.isdigit() and len(code) == DIGITS):
        return None
    generator, now = HOTP(_key(secret), DIGITS, hashes.SHA1()), step_at(when)
    found = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(generator.generate(step), code.encode("ascii")) and step > after_step:
            found = step
    return found


def provisioning_uri(secret: str, account: str, issuer: str = "Face appliance") -> str:
    """``otpauth://`` URI for authenticator apps (shown once, on the terminal only)."""
    label = urllib.parse.quote(f"{issuer}:{account}")
    query = urllib.parse.urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1",
                                    "digits": DIGITS, "period": STEP_S})
    return f"otpauth://totp/{label}?{query}"
