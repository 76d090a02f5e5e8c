"""Consent and enrollment rules, in code rather than in a procedure document.

Face enrollment needs a separate, specific consent (scope ``face-enrollment``) that names its
text version, time and who gave it; under-14s need their guardian's consent. Every person also
has a non-face alternative (card or PIN) on record, because face recognition may not be the
only way through the door. Withdrawal of consent leads to deletion (see ``stores.deletion``).

The notice a person consents to is data, not code: ``config/notices/<scope>.<language>.txt``
(shipped in the wheel like the rest of ``config/``), its first line ``version: <id>``; a
consent record names that version and the reference of the signed form or record
(``reference``), so each consent can be traced to the words the person was shown.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import Enum

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode

ENROLL_SCOPE = "face-enrollment"
NOTICE_DIR = "config/notices"
NOTICE_LANGUAGES = ("zh-CN", "en")  # the first is the default
VERSION_PREFIX = "version:"
SUBJECT_ID_PREFIX = "s-"
SUBJECT_ID_BYTES = 16  # 128 random bits: a pseudonym that reveals nothing and never collides


class AgeBand(Enum):
    UNDER_14 = "under_14"
    FROM_14_TO_17 = "14_to_17"
    ADULT = "adult"


class Alternative(Enum):
    """Non-face ways through the door; one is always recorded for each person."""

    CARD = "card"
    PIN = "pin"
    CARD_AND_PIN = "card_and_pin"


def new_subject_id() -> str:
    return SUBJECT_ID_PREFIX + secrets.token_hex(SUBJECT_ID_BYTES)


@dataclass(frozen=True)
class Person:
    """An identity record: kept only in the identity registry, never beside templates."""

    subject_id: str
    name: str
    age_band: AgeBand
    alternative: Alternative
    staff_no: str = ""
    card_no: str = ""
    id_number: str = ""
    phone: str = ""
    guardian_name: str = ""
    guardian_phone: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.alternative, Alternative):
            raise ApplianceError(ErrorCode.CONSENT_MISSING, "a non-face alternative (card or PIN) must be recorded")
        if self.age_band is AgeBand.UNDER_14 and not self.guardian_name:
            raise ApplianceError(ErrorCode.CONSENT_MISSING, "a person under 14 needs a guardian on record")


@dataclass(frozen=True)
class ConsentRecord:
    subject_id: str
    scope: str
    text_version: str
    consented_at: float
    consented_by: str  # the person themselves, or the guardian's name
    by_guardian: bool = False
    withdrawn_at: float | None = None
    reference: str = ""  # the signed form or record this consent was given on


    @property
    def active(self) -> bool:
        return self.withdrawn_at is None


def check_enrollable(person: Person, consents: list[ConsentRecord]) -> ConsentRecord:
    """The consent that allows enrolling ``person``, or CONSENT_MISSING saying what is lacking."""
    usable = [c for c in consents if c.active and c.scope == ENROLL_SCOPE and c.text_version and c.consented_by]
    if not usable:
        raise ApplianceError(
            ErrorCode.CONSENT_MISSING, f"{person.subject_id}: no active '{ENROLL_SCOPE}' consent on record"
        )
    if person.age_band is AgeBand.UNDER_14:
        usable = [c for c in usable if c.by_guardian]
        if not usable:
            raise ApplianceError(
                ErrorCode.CONSENT_MISSING, f"{person.subject_id}: under 14, the guardian's consent is required"
            )
    return max(usable, key=lambda c: c.consented_at)


@dataclass(frozen=True)
class ConsentNotice:
    """What a person is told before consenting: the text of one language and its version."""

    scope: str
    language: str
    version: str
    text: str


def notice(language: str = NOTICE_LANGUAGES[0], scope: str = ENROLL_SCOPE) -> ConsentNotice:
    """The shipped notice of ``scope`` in ``language``; CONSENT_MISSING when there is none
    (nobody may be enrolled on a notice that cannot be shown)."""
    if language not in NOTICE_LANGUAGES:
        raise ApplianceError(ErrorCode.CONSENT_MISSING,
                             f"no consent notice in {language!r}; one of {', '.join(NOTICE_LANGUAGES)}")
    path = paths.resource(f"{NOTICE_DIR}/{scope}.{language}.txt")
    try:
        first, _, text = path.read_text(encoding="utf-8").partition("\n")
    except OSError as exc:
        raise ApplianceError(ErrorCode.CONSENT_MISSING, f"consent notice {path} unreadable: {exc.strerror}") from None
    version = first.removeprefix(VERSION_PREFIX).strip() if first.startswith(VERSION_PREFIX) else ""
    if not version or not text.strip():
        raise ApplianceError(ErrorCode.CONSENT_MISSING,
                             f"consent notice {path}: first line must be '{VERSION_PREFIX} <id>', then the text")
    return ConsentNotice(scope, language, version, text.strip() + "\n")
