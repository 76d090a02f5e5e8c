"""What the enrollment desk is asked and what it answers, for every entry point alike (CLI,
REST API, console, door camera): a request checked field by field before anything is
decoded or written, and outcomes that say only what may be shown (masked names, pseudonyms;
a similarity score only when a caller explicitly asks for debugging)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from appliance.enrollment import EnrollmentResult
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.consent import AgeBand, Alternative
from appliance.stores.audit_chain import FORBIDDEN

ENROLLED, FAILED_TO_ENROL, DUPLICATE = "enrolled", "failed_to_enroll", "duplicate"
MATCH, NO_MATCH = "match", "no_match"
CENTRAL, DOORS, NOWHERE = "central", "doors", "nowhere"  # where an enrolled face opens doors
JUSTIFY_COMMAND = "appliance site matching justify"
ACCESS_COMMAND = "appliance access member add <group> <subject id>"
MAX_NAME_CHARS = 100
MAX_REFERENCE_CHARS = 200  # a form number, a scan's file name, a case reference
MAX_REASON_CHARS = 500
MAX_GROUPS = 32
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")  # the door groups of devices (config device.group)


def _choice(enum: type, value: Any, what: str) -> Any:
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        raise ApplianceError(ErrorCode.CONSENT_MISSING,
                             f"{what} {value!r}: one of {', '.join(m.value for m in enum)}") from None


def _text(value: Any, what: str, limit: int) -> str:
    text = " ".join(str(value or "").split())
    if len(text) > limit:
        raise ApplianceError(ErrorCode.CONSENT_MISSING, f"{what} longer than {limit} characters")
    return text


@dataclass(frozen=True)
class EnrollmentRequest:
    """One person to enroll, as the desk, the console, the API or the door's operator gives it.

    ``consent_ref`` names the signed form (or its record) of the separate consent; the
    consent is recorded against the notice version current now unless ``notice_version``
    names the one the person was shown (then it must be the current one). Under 14 the
    guardian gives the consent. ``groups``: door groups whose devices may hold the template
    (none: all); ``local_matching``: the person also consented to matching on door devices.
    ``override_reason``: enroll although the face is already enrolled (a security
    administrator's decision, recorded in the audit log).
    """

    name: str
    consent_ref: str
    age_band: AgeBand | str = AgeBand.ADULT
    alternative: Alternative | str = Alternative.CARD
    card_no: str = ""
    staff_no: str = ""
    guardian_name: str = ""
    groups: tuple[str, ...] = ()
    local_matching: bool = False
    override_reason: str = ""
    notice_version: str = ""

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "name", _text(self.name, "name", MAX_NAME_CHARS))
        put(self, "consent_ref", _text(self.consent_ref, "consent reference", MAX_REFERENCE_CHARS))
        put(self, "guardian_name", _text(self.guardian_name, "guardian name", MAX_NAME_CHARS))
        put(self, "card_no", _text(self.card_no, "card number", MAX_NAME_CHARS))
        put(self, "staff_no", _text(self.staff_no, "staff number", MAX_NAME_CHARS))
        put(self, "notice_version", _text(self.notice_version, "notice version", MAX_NAME_CHARS))
        put(self, "age_band", _choice(AgeBand, self.age_band, "age band"))
        put(self, "alternative", _choice(Alternative, self.alternative, "alternative"))
        if not self.name:
            raise ApplianceError(ErrorCode.CONSENT_MISSING, "the person's name is required")
        if not self.consent_ref:
            raise ApplianceError(ErrorCode.CONSENT_MISSING,
                                 "a consent reference (the signed form or its record) is required")
        groups = tuple(dict.fromkeys(g.strip() for g in self.groups if g and g.strip()))
        bad = [g for g in groups if not GROUP_NAME.fullmatch(g)]
        if bad or len(groups) > MAX_GROUPS:
            raise ApplianceError(ErrorCode.ENROLL_FAILED, f"door groups: at most {MAX_GROUPS} names of letters, "
                                                          f"digits and _.:- (up to 64 characters); not {bad[:3]}")
        put(self, "groups", groups)
        reason = " ".join(str(self.override_reason or "").split())
        if len(reason) > MAX_REASON_CHARS:
            raise ApplianceError(ErrorCode.ENROLL_FAILED, f"override reason longer than {MAX_REASON_CHARS} characters")
        if FORBIDDEN.search(reason):  # it goes into the audit log, which refuses such words
            raise ApplianceError(ErrorCode.AUDIT_FORBIDDEN_DATA,
                                 "the override reason may not quote scores, thresholds or mention images")
        put(self, "override_reason", reason)
        put(self, "local_matching", bool(self.local_matching))


@dataclass(frozen=True)
class Rejection:
    """A capture that did not pass: its label, the quality codes and what to change."""

    image: str
    reason: str
    guidance: str


@dataclass(frozen=True)
class Usability:
    """Where a person's face works, so nobody is enrolled into a face that opens no door
    without being told.

    Without the site's recorded justification for central matching every door decides from
    its own cache (``matcher.site_policy``), and a cache holds only people with an active
    local-matching consent, in their door groups (``matcher.eligibility``). So the face works
    ``central`` (the site is justified: the matcher searches everyone), ``doors`` (local
    consent: the caches of ``groups``, every door when empty) or ``nowhere`` - then
    ``reason`` says why and ``action`` what would change it. Once the site has access groups
    (``appliance.access``) only the doors they grant the person open (``access_doors``; None:
    no access rules, every door), and a person granted none is ``nowhere`` too.
    """

    where: str  # CENTRAL, DOORS or NOWHERE
    central_matching: bool  # the site holds a justification for central matching
    local_matching: bool  # the person's local-matching consent is on record and active
    groups: tuple[str, ...] = ()  # the person's door groups (none: every door)
    message: str = ""
    reason: str = ""  # why NOWHERE; "" otherwise
    action: str = ""  # what to do about NOWHERE; "" otherwise
    access_doors: tuple[str, ...] | None = None  # doors the access rules let them open; None: no rules

    @classmethod
    def of(cls, central: bool, local: bool, groups: tuple[str, ...] = (), has_template: bool = True,
           access_doors: tuple[str, ...] | None = None) -> Usability:
        """The one rule every entry point and listing shows."""
        found = cls._of(central, local, tuple(sorted(groups)), has_template)
        if access_doors is None:
            return found
        opens = tuple(sorted(access_doors))
        if found.where != NOWHERE and not opens:
            return cls(NOWHERE, central, local, found.groups, "the face is usable at no door",
                       "the site has access groups and none of the person's grants a door (or their validity has "
                       "ended)", f"add the person to an access group that grants doors ({ACCESS_COMMAND})", opens)
        if found.where != NOWHERE:
            found = replace(found, message=f"{found.message}; the access rules let them open {', '.join(opens)} "
                                           "(on their groups' schedules)")
        return replace(found, access_doors=opens)

    @classmethod
    def _of(cls, central: bool, local: bool, groups: tuple[str, ...], has_template: bool) -> Usability:
        doors = f"door groups {', '.join(groups)}" if groups else "every door"
        if not has_template:
            return cls(NOWHERE, central, local, groups, "the face is usable at no door",
                       "no face template is on record", "enroll the person's face again")
        if central:
            cached = (f"door caches of {doors} also hold it (works while the matcher is unreachable)" if local
                      else "no door cache holds it (no local-matching consent): doors configured 'local' and doors "
                           "that cannot reach the matcher will not recognise the face")
            return cls(CENTRAL, central, local, groups, f"matched centrally (the site's justification is on "
                                                         f"record); {cached}")
        if local:
            return cls(DOORS, central, local, groups, f"matched from the door caches of {doors} "
                                                       "(local-matching consent; no central matching on this site)")
        return cls(NOWHERE, central, local, groups, "the face is usable at no door",
                   "this site has no recorded justification for central matching, so every door decides from its "
                   "own cache, and the person gave no local-matching consent, so no door cache holds the template",
                   "record the person's local-matching consent (enroll with --local-matching, the console's "
                   "local-matching box or local_matching=true), or a security administrator records the site's "
                   f"justification for central matching ({JUSTIFY_COMMAND})")

    @property
    def warning(self) -> str:
        """The line an operator must read, or "" when the face works somewhere."""
        if self.where != NOWHERE:
            return ""
        return f"{self.message}: {self.reason}. What to do: {self.action}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["groups"] = list(self.groups)
        out["access_doors"] = None if self.access_doors is None else list(self.access_doors)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usability | None:
        """``as_dict`` read back (an answer of the REST API), or None."""
        if not data:
            return None
        return cls(str(data["where"]), bool(data["central_matching"]), bool(data["local_matching"]),
                   tuple(data.get("groups", ())), str(data.get("message", "")), str(data.get("reason", "")),
                   str(data.get("action", "")),
                   None if data.get("access_doors") is None else tuple(data["access_doors"]))


@dataclass(frozen=True)
class EnrollmentOutcome:
    status: str  # ENROLLED, FAILED_TO_ENROL or DUPLICATE
    subject_id: str = ""  # the new pseudonym; "" unless enrolled
    images_used: int = 0
    rejected: tuple[Rejection, ...] = ()
    duplicate_of: str = ""  # "<masked name> (<subject id>)" of the person already enrolled
    attempts: int = 0
    overridden: bool = False  # enrolled although a duplicate (reason in the audit log)
    usable_at: Usability | None = None  # where the face works; None unless enrolled
    warnings: tuple[str, ...] = ()  # what the operator must be told (a face usable nowhere)

    @property
    def message(self) -> str:
        if self.status == DUPLICATE:
            return f"already enrolled as {self.duplicate_of}"
        if self.status == FAILED_TO_ENROL:
            return (f"failed to enrol: none of {len(self.rejected)} capture(s) in {self.attempts} attempt(s) "
                    "passed the enrollment quality profile")
        return f"enrolled {self.subject_id} from {self.images_used} capture(s)"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejected"] = [asdict(r) for r in self.rejected]
        out["usable_at"] = self.usable_at.as_dict() if self.usable_at else None
        out["warnings"] = list(self.warnings)
        out["message"] = self.message
        return out


def outcome_of(result: EnrollmentResult, status: str, subject_id: str = "", duplicate_of: str = "",
               overridden: bool = False, usable_at: Usability | None = None) -> EnrollmentOutcome:
    rejected = tuple(Rejection(r.label, r.reason, r.guidance) for r in result.rejected)
    warnings = (usable_at.warning,) if usable_at and usable_at.warning else ()
    return EnrollmentOutcome(status, subject_id, result.used, rejected, duplicate_of, result.attempts, overridden,
                             usable_at, warnings)


@dataclass(frozen=True)
class IdentifyOutcome:
    decision: str  # MATCH or NO_MATCH
    subject_id: str = ""
    name: str = ""  # masked
    score: float | None = field(default=None, repr=False)  # only when asked for with debug

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decision": self.decision, "subject_id": self.subject_id, "name": self.name}
        if self.score is not None:
            out["score"] = round(self.score, 4)
        return out
