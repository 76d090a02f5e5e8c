"""TOTP (RFC 6238) with the standard library: the administrators' second factor.

Thirty lines of hmac/struct do not justify a dependency; the RFC's own test vectors pin the
implementation (tests/ops/test_accounts.py). Codes are accepted one step either side of
now for clock drift, and the caller stores the last accepted step so a code works once.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
import urllib.parse

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1
SECRET_BYTES = 20  # 160 bits, the RFC 4226 recommendation for HMAC-SHA1
ALGORITHMS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def new_secret() -> str:
    """A random base32 secret (what authenticator apps take), without padding."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def _key(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def hotp(key: bytes, counter: int, digits: int = DIGITS, algorithm: str = "SHA1") -> str:
    """RFC 4226 HOTP: dynamic truncation of HMAC(key, counter)."""
    mac = hmac.new(key, struct.pack(">Q", counter), ALGORITHMS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


def step_at(when: float, step_s: int = STEP_S) -> int:
    return int(when // step_s)


def totp(secret: str, when: float | None = None, digits: int = DIGITS, algorithm: str = "SHA1",
         step_s: int = STEP_S) -> str:
    return hotp(_key(secret), step_at(time.time() if when is None else when, step_s), digits, algorithm)


def matching_step(secret: str, code: str, when: float, after_step: int = -1) -> int | None:
    """The time step whose code equals ``code`` (within the drift window and later than
    ``after_step``, the last one used), or None. Comparison is constant-time."""
    if not (code.isdigit() and len(code) == DIGITS):
        return None
    key, now = _key(secret), step_at(when)
    found = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(hotp(key, step), code) and step > after_step:
            found = step
    return found


def provisioning_uri(secret: str, account: str, issuer: str = "Face appliance") -> str:
    """``otpauth://`` URI for authenticator apps (shown once, on the terminal only)."""
    label = urllib.parse.quote(f"{issuer}:{account}")
    query = urllib.parse.urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1",
                                    "digits": DIGITS, "period": STEP_S})
    return f"otpauth://totp/{label}?{query}"
