"""The typed requests and answers of the REST API (pydantic), so the OpenAPI document at
``/api/openapi.json`` describes every route completely. Names in answers are masked unless a
route says otherwise; no answer carries a similarity score."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from appliance.matcher.capture_client import DEFAULT_FRAMES
from appliance.matcher.enrollment_types import CENTRAL, DOORS, NOWHERE
from appliance.protocol.capture_messages import MAX_CAPTURE_FRAMES
from appliance.security.consent import AgeBand, Alternative
from appliance.security.roles import Role

MAX_PEOPLE_PAGE = 200
DEFAULT_PAGE = 50
MAX_QUERY_CHARS = 100
MAX_TEXT_CHARS = 200
MAX_PASSWORD_CHARS = 1024
TOTP_CHARS = 12
ROLE_NAMES = tuple(role.value for role in Role)
MAX_NUMBER_CHARS = 100  # a card or staff number, a notice version (as POST /api/people takes them)
MAX_REASON_CHARS = 500
MAX_GROUP_NAMES = 64
AGE_BANDS = tuple(band.value for band in AgeBand)
ALTERNATIVES = tuple(alternative.value for alternative in Alternative)
WHERE_USABLE = (CENTRAL, DOORS, NOWHERE)


class ErrorDetail(BaseModel):
    code: int
    name: str
    title: str
    detail: str


class ErrorBody(BaseModel):
    """Every refusal the library makes: the stable code the command line prints as ``E<code>``."""

    error: ErrorDetail


# -- people -----------------------------------------------------------------------------
class Usability(BaseModel):
    """Where the person's face works (``EnrollmentDesk.usability``): ``central`` (the site's
    justification for central matching is on record), ``doors`` (local-matching consent: the
    caches of ``groups``, every door when empty) or ``nowhere``, with ``reason`` and ``action``."""

    where: Literal[WHERE_USABLE]
    central_matching: bool
    local_matching: bool
    groups: list[str]
    message: str
    reason: str
    action: str


class Person(BaseModel):
    """An identity record; masked unless fetched with ``unmasked=true`` by a role allowed to
    (that access is in the audit log)."""

    model_config = ConfigDict(extra="allow")
    subject_id: str
    name: str = ""
    usable_at: Usability | None = None


class PeoplePage(BaseModel):
    items: list[Person]
    total: int
    offset: int
    limit: int


class PeopleSearch(BaseModel):
    """A search in the request body, so a name never appears in a URL or an access log."""

    q: str = Field("", max_length=MAX_QUERY_CHARS)
    offset: int = Field(0, ge=0)
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PEOPLE_PAGE)


class Rejection(BaseModel):
    image: str
    reason: str
    guidance: str


class Enrollment(BaseModel):
    """What an enrollment did: enrolled (201), duplicate (409) or failed to enrol (422), with
    what each rejected image lacked and how to capture it better."""

    status: Literal["enrolled", "failed_to_enroll", "duplicate"]
    subject_id: str
    images_used: int
    rejected: list[Rejection]
    duplicate_of: str
    attempts: int
    overridden: bool
    message: str
    usable_at: Usability | None = Field(None, description="where the face works; null unless enrolled")
    warnings: list[str] = Field(default_factory=list, description=(
        "what the operator must be told, e.g. a face that is usable at no door and what to do about it"))


# -- enrollment from a door camera ------------------------------------------------------
class EnrollCapture(BaseModel):
    """A person to enroll from a door's camera (``POST /api/devices/{name}/enroll-capture``):
    the consent and person fields of ``POST /api/people``, with the same limits, as JSON,
    and the burst to ask the door for."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=MAX_TEXT_CHARS)
    consent_ref: str = Field(max_length=MAX_TEXT_CHARS)
    age_band: Literal[AGE_BANDS] = AgeBand.ADULT.value
    alternative: Literal[ALTERNATIVES] = Alternative.CARD.value
    card_no: str = Field("", max_length=MAX_NUMBER_CHARS)
    staff_no: str = Field("", max_length=MAX_NUMBER_CHARS)
    guardian_name: str = Field("", max_length=MAX_TEXT_CHARS)
    groups: list[str] = Field(default_factory=list, max_length=MAX_GROUP_NAMES)
    local_matching: bool = False
    override_reason: str = Field("", max_length=MAX_REASON_CHARS)
    notice_version: str = Field("", max_length=MAX_NUMBER_CHARS, description=(
        "the consent notice the person was shown; empty: the current one"))
    frames: int = Field(DEFAULT_FRAMES, ge=1, le=MAX_CAPTURE_FRAMES, description=(
        "captures to take (the enrollment policy: up to 3 attempts of 3)"))
    timeout_s: float | None = Field(None, gt=0, description=(
        "how long the door may take, seconds; at most (and by default) [console] capture_timeout_s"))


class CaptureRefusal(ErrorBody):
    """A capture that never reached the enrollment desk: the door did not answer in time
    (504), was busy or does not capture (409), saw no face or judged the presentation not
    live (422). ``guidance`` is what to tell the person, or what the operator can do."""

    device: str
    device_status: str  # the door's answer (busy, refused, no_face, liveness_failed) or no_answer
    guidance: str


class Groups(BaseModel):
    groups: list[str] = Field(default_factory=list, max_length=64)


class SubjectGroups(Groups):
    subject_id: str


class Deletion(BaseModel):
    """The signed deletion receipt, as ``appliance subject delete`` prints it."""

    receipt: dict[str, Any]


class Decision(BaseModel):
    """1:N or 1:1 answer: the decision only, never a score."""

    decision: Literal["match", "no_match"]
    subject_id: str = ""
    name: str = ""  # masked


# -- devices and events -----------------------------------------------------------------
class Device(BaseModel):
    name: str
    group: str
    modes: list[str]
    revoked: bool
    acked_revision: int
    lag: int
    last_seen: float | None
    online: bool


class Revocation(BaseModel):
    name: str
    revoked: bool
    broker_restarted: bool
    detail: str


class Event(BaseModel):
    seq: int
    event_id: str
    device: str
    type: str
    kind: str
    outcome: str
    at: float
    received_at: float
    details: dict[str, Any]


class EventPage(BaseModel):
    items: list[Event]
    total: int
    offset: int
    limit: int


# -- audit ------------------------------------------------------------------------------
class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    seq: int
    time: float
    actor: str
    role: str
    action: str
    object: str
    result: str


class AuditPage(BaseModel):
    items: list[AuditEntry]
    total: int


class AuditVerdict(BaseModel):
    ok: bool
    entries: int
    first_bad: int | None
    reason: str
    head_time: float | None


# -- accounts, tokens, sessions ---------------------------------------------------------
class Account(BaseModel):
    name: str
    role: str
    disabled: bool
    locked: bool


class NewAccountIn(BaseModel):
    name: str = Field(max_length=64)
    role: Literal[ROLE_NAMES]
    password: str = Field(max_length=MAX_PASSWORD_CHARS)


class NewAccount(BaseModel):
    """The TOTP secret is in this answer once, for the new user's authenticator app."""

    account: Account
    totp_secret: str
    provisioning_uri: str


class NewTokenIn(BaseModel):
    account: str = Field(max_length=64)
    scopes: list[str] = Field(min_length=1)
    ttl_days: float = Field(90.0, gt=0)
    label: str = Field("", max_length=MAX_TEXT_CHARS)


class NewToken(BaseModel):
    """The token is in this answer once; only its hash is stored."""

    token: str
    token_id: str
    expires_at: float


class Token(BaseModel):
    token_id: str
    account: str
    scopes: list[str]
    label: str
    created: float
    created_by: str
    expires_at: float
    revoked: bool
    last_used: float | None


class Login(BaseModel):
    account: str = Field(max_length=64)
    password: str = Field(max_length=MAX_PASSWORD_CHARS)
    totp: str = Field(max_length=TOTP_CHARS)


class SessionOut(BaseModel):
    """The session token, for API clients (``Authorization: Bearer``); a browser also gets
    it as the HttpOnly session cookie."""

    token: str
    account: str
    role: str
    expires_idle_s: float


class Done(BaseModel):
    ok: bool = True
