"""Card and PIN: the non-face alternative, judged the same on the matcher and at the door.

What a door mode accepts (``needs_face``, ``accepts_credential``), how a PIN is stored (a
salted scrypt hash: slow, so a stolen store costs an attacker time per guess; docs/door-modes.md
says how much) and the one rule that turns a looked-up credential into a ``Verdict``. A person
who refused face recognition (``face_refused``) is always offered the alternative: a PIN
(with their card) opens every door they may pass, a card alone only where the mode takes cards.
Pure apart from the hash: the caller gives the time and the look-ups.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from appliance.config.mode_tables import DoorMode
from appliance.errors import ApplianceError, ErrorCode
from appliance.matching.decisions import Verdict
from appliance.matching.limits import FailureTracker
from appliance.protocol.credential_messages import (
    CARD, CARD_PATTERN, MAX_CARD_CHARS, MAX_PIN_DIGITS, MIN_PIN_DIGITS, PIN,
)
from appliance.protocol.messages import Reason

CREDENTIAL_KINDS = (CARD, PIN)
# scrypt cost: 2**14 x 8 x 128 bytes = 16 MiB of memory and ~0.12 s per check (measured on the
# development machine): slows a copied store down, small enough to check one PIN per pass
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_BYTES, HASH_BYTES = 16, 32
PIN_HASH_SCHEME = "scrypt"

_FACE_MODES = frozenset({DoorMode.FACE, DoorMode.CARD_AND_FACE})
_ALONE = {DoorMode.FACE: frozenset(), DoorMode.CARD_AND_FACE: frozenset(),
          DoorMode.CARD_OR_PIN: frozenset({CARD, PIN}), DoorMode.FACE_OR_CARD: frozenset({CARD})}


@dataclass(frozen=True)
class Credential:
    """What a reader gave: a card number, or a card number with the PIN typed after it."""

    kind: str  # CARD or PIN
    card: str
    pin: str = ""

    def __post_init__(self) -> None:
        check_card(self.card)
        if self.kind not in CREDENTIAL_KINDS:
            raise ApplianceError(ErrorCode.MESSAGE_REJECTED, f"credential kind {self.kind!r}: card or pin")
        if self.kind == PIN:
            check_pin(self.pin)
        elif self.pin:
            raise ApplianceError(ErrorCode.MESSAGE_REJECTED, "a card credential carries no PIN")

    def __repr__(self) -> str:  # never a PIN or card number in a log line
        return f"Credential({self.kind})"


def needs_face(mode: DoorMode | str) -> bool:
    """Whether a face pass is required (nobody without a face refusal passes without one)."""
    return DoorMode(mode) in _FACE_MODES


def offers_face(mode: DoorMode | str) -> bool:
    """Whether the door runs the camera pass at all (``card|pin`` does not)."""
    return DoorMode(mode) != DoorMode.CARD_OR_PIN


def accepts_credential(mode: DoorMode | str, kind: str) -> bool:
    """Whether a credential of ``kind`` alone opens the door in ``mode`` for anyone."""
    return kind in _ALONE[DoorMode(mode)]


def allowed_for(mode: DoorMode | str, kind: str, face_refused: bool) -> bool:
    """Whether this person's credential of ``kind`` may open the door: what the mode accepts,
    and for a person who refused face recognition a PIN at every door."""
    return accepts_credential(mode, kind) or (face_refused and kind == PIN)


def check_card(card: str) -> str:
    if not CARD_PATTERN.fullmatch(card):
        raise ApplianceError(ErrorCode.MESSAGE_REJECTED,
                             f"a card number is 1-{MAX_CARD_CHARS} letters, digits or '-'")
    return card


def check_pin(pin: str) -> str:
    if not (MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS) or not pin.isascii() or not pin.isdigit():
        raise ApplianceError(ErrorCode.MESSAGE_REJECTED, f"a PIN is {MIN_PIN_DIGITS}-{MAX_PIN_DIGITS} digits")
    return pin


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=HASH_BYTES)


def hash_pin(pin: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (hex): the only form a PIN is ever stored in."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(check_pin(pin), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{PIN_HASH_SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def pin_matches(pin: str, stored: str) -> bool:
    """Constant-time check of ``pin`` against a ``hash_pin`` value; False for anything malformed."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != PIN_HASH_SCHEME:
            return False
        return hmac.compare_digest(_scrypt(pin, bytes.fromhex(salt), int(n), int(r), int(p)), bytes.fromhex(digest))
    except (ValueError, UnicodeEncodeError):
        return False


@dataclass(frozen=True)
class Holder:
    """The person a card belongs to, as the deciding side knows them."""

    subject_id: str
    pin_hash: str = ""  # "" when no PIN is set
    face_refused: bool = False


class CredentialJudge:
    """Turns a credential and its holder (None: unknown card) into a ``Verdict``. Failures
    count per card, and a wrong PIN also per door (its keypad): ``attempts`` failures in a row
    lock that key for ``lockout_s`` (a success clears it)."""

    def __init__(self, attempts: int, lockout_s: float):
        self.tracker = FailureTracker(limit=attempts, backoff_s=lockout_s)

    def judge(self, door: str, mode: DoorMode | str, credential: Credential, holder: Holder | None,
              now: float) -> Verdict:
        keys = [f"card:{hashlib.sha256(credential.card.encode()).hexdigest()}"]
        if credential.kind == PIN:
            keys.append(f"keypad:{door}")
        wait = max(self.tracker.retry_after(key, now) for key in keys)
        if wait > 0:
            return Verdict(False, Reason.LOCKED_OUT, retry_after_s=wait)
        if holder is None:
            verdict = Verdict(False, Reason.UNKNOWN_CLAIM)
        elif not allowed_for(mode, credential.kind, holder.face_refused):
            return Verdict(False, Reason.BAD_REQUEST)  # the door's rule, not a guess: not counted
        elif credential.kind == PIN and not (holder.pin_hash and pin_matches(credential.pin, holder.pin_hash)):
            verdict = Verdict(False, Reason.NO_MATCH)
        else:
            verdict = Verdict(True, Reason.MATCH, holder.subject_id)
        for key in keys:
            self.tracker.record(key, verdict.accepted, now)
        return verdict
