"""Typed, validated protocol messages (the payloads inside sealed envelopes).

Each message is a frozen dataclass serialised as compact UTF-8 JSON with a ``type`` and a
protocol version ``v``. Decoding is strict: unknown or missing fields, wrong types, oversized
values and unknown versions are refused with MESSAGE_REJECTED - a malformed message never
reaches service logic. A decision carries accept/reject, a masked display name and a reason
code: never a score, never a template.

The checks live on the fields: ``Annotated[..., Field(...)]`` types (``protocol.fields``:
strict scalars, text at most ``MAX_TEXT`` characters, 32-hex-digit ids; allowed values as
``Literal``) validated by pydantic's ``TypeAdapter`` - the mechanism that checks the
configuration (``appliance.config``). Rules joining fields are ``model_validator``s on the
class. The dataclasses stay plain: constructing one in code checks nothing, ``decode`` checks all.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError, model_validator, with_config
from pydantic_core import from_json

# pydantic reads a TypedDict from typing_extensions (its own dependency) below Python 3.12
from typing_extensions import NotRequired, TypedDict

from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol.fields import (  # the message modules import the field types from here too
    MAX_TEXT, REQUEST_ID, STRICT_FIELDS, Base64, Digest, Flag, Id, Integer, MaybeSubjectId, Number, Revision,
    Signature, SubjectId, Text, RuleBroken, check_template, check_vector, read_template,
)

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 48 * 1024
SYNC_KINDS = ("changes", "snapshot", "notice")
ENROLLMENT_ACTIONS = ("enrolled", "deleted")


def new_id() -> str:
    return uuid.uuid4().hex


def _reject(detail: str) -> ApplianceError:
    return ApplianceError(ErrorCode.MESSAGE_REJECTED, detail)


class Reason:
    """Decision reason codes (stable strings; docs/protocol.md lists them)."""

    MATCH = "match"
    NO_MATCH = "no_match"
    UNKNOWN_CLAIM = "unknown_claim"
    LIVENESS_FAILED = "liveness_failed"
    LOCKED_OUT = "locked_out"  # too many failures: back off, then the non-face alternative
    BAD_REQUEST = "bad_request"
    PACK_MISMATCH = "pack_mismatch"
    # the door's own answer, never a matcher's: the matcher did not answer and the device cache
    # cannot stand in for it (never synced, or too old); a refusal that is not a "no"
    UNAVAILABLE = "unavailable"
    ACCESS = ("not_in_group", "outside_schedule", "not_yet_valid", "expired", "anti_passback")  # appliance.access
    ALL = (MATCH, NO_MATCH, UNKNOWN_CLAIM, LIVENESS_FAILED, LOCKED_OUT, BAD_REQUEST, PACK_MISMATCH, UNAVAILABLE,
           *ACCESS)


@dataclass(frozen=True)
class Message:
    TYPE: ClassVar[str] = ""
    # fields added later, left off the wire while empty: a message that does not use them
    # encodes to the bytes it always did (and decodes to the default)
    WIRE_OPTIONAL: ClassVar[tuple[str, ...]] = ()
    __pydantic_config__: ClassVar[ConfigDict] = STRICT_FIELDS

    def encode(self) -> bytes:
        # the fields as they are: the encoder walks nested values (asdict's deep copy: half a Decision's encoding)
        body = {"v": PROTOCOL_VERSION, "type": self.TYPE} | {name: getattr(self, name) for name in _fields(type(self))}
        for name in self.WIRE_OPTIONAL:
            if not body[name]:
                del body[name]
        return _ENCODER.encode(body).encode("utf-8")


# compact UTF-8 JSON, one encoder for every message (json.dumps with options builds one per
# call); a dataclass nested in a field is written as its asdict
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=dataclasses.asdict)


@functools.cache
def _fields(cls: type[Message]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class MatchRequest(Message):
    """Device -> matcher: a probe template for 1:1 (``claim`` set) or 1:N identification."""

    TYPE: ClassVar[str] = "match_request"
    request_id: Id
    device_id: Text
    mode: Literal["verify", "identify"]
    template_b64: Annotated[Base64, Field(description="little-endian float32, unit length")]
    captured_at: Number
    claim: Annotated[Text, Field(description="card / PIN / QR credential for 1:1 verification")] = ""
    attempt: Integer = 1
    liveness: Annotated[dict[str, Any], Field(description="signed evidence summary, never images")] \
        = field(default_factory=dict)

    def vector(self) -> np.ndarray:
        return self._probe.astype(np.float32)  # a writable copy

    @functools.cached_property
    def _probe(self) -> np.ndarray:
        """The template read from base64 once, for ``decode``'s rules and then ``vector``."""
        return read_template(self.template_b64, "template")

    @staticmethod
    def pack_vector(vector: np.ndarray) -> str:
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")

    @model_validator(mode="after")
    def _rules(self) -> MatchRequest:
        if self.mode == "verify" and not self.claim:
            raise RuleBroken("verify needs a claim")
        check_vector(self._probe, "template", unit=True)
        return self


@dataclass(frozen=True)
class Decision(Message):
    """Matcher -> device: the answer. Pass/fail and why; never a score."""

    TYPE: ClassVar[str] = "decision"
    WIRE_OPTIONAL: ClassVar[tuple[str, ...]] = ("subject",)
    request_id: Id
    accepted: Flag
    reason: Literal[Reason.ALL]
    display_name: Annotated[Text, Field(description="masked")] = ""
    retry_after_s: Number = 0.0
    # the pseudonym matched (never a name): the door's event says whom it let in, so that a
    # person's access request finds it; the door's cache holds the same pseudonyms
    subject: MaybeSubjectId = ""

    @model_validator(mode="after")
    def _rules(self) -> Decision:
        if self.accepted and self.reason != Reason.MATCH:
            raise RuleBroken(f"an accepted decision with reason {self.reason!r}")
        if self.subject and not self.accepted:
            raise RuleBroken("a refused decision names nobody")
        return self


@dataclass(frozen=True)
class Report(Message):
    """Device -> matcher through the device outbox: an ``Event`` or an ``Alarm``. Both have one
    shape, ``<id>, device_id, kind, at, details, signature``, and differ only in the name of the
    id on the wire (``event_id``, ``alarm_id``); ``ref`` is that id, the key of the outbox, of the
    matcher's acknowledgement and of its exactly-once record. ``signature`` is the device's own
    over ``document()`` (the outbox adds it): the audit log keeps it for a door's decisions."""

    ID_FIELD: ClassVar[str] = ""
    WIRE_OPTIONAL: ClassVar[tuple[str, ...]] = ("signature",)
    if TYPE_CHECKING:  # declared once for both kinds by _report, after the id
        device_id: str
        kind: str
        at: float
        details: dict[str, Any]
        signature: str  # the device's own signature over ``document()`` (security.device_reports)

    @property
    def ref(self) -> str:
        return getattr(self, self.ID_FIELD)

    def document(self) -> dict[str, Any]:
        """What the device signs (``security.device_reports``): every field but the signature."""
        body = {"type": self.TYPE, **dataclasses.asdict(self)}
        del body["signature"]
        return body


def _report(name: str, wire_type: str, id_field: str, doc: str) -> Any:
    """A kind of ``Report``: its id first, then the fields every report has (constructor order
    is wire order)."""
    fields = [(id_field, Id), ("device_id", Text), ("kind", Text), ("at", Number),
              ("details", dict[str, Any], field(default_factory=dict)), ("signature", Signature, "")]
    return dataclasses.make_dataclass(name, fields, bases=(Report,), frozen=True, namespace={
        "TYPE": wire_type, "ID_FIELD": id_field, "__doc__": doc, "__module__": __name__})


Event = _report("Event", "event", "event_id",
                "Device -> matcher: an access event (pass outcome, tailgating, door state).")
Alarm = _report("Alarm", "alarm", "alarm_id",
                "Device -> matcher: a security alarm (presentation attack, tamper, forced door).")


@dataclass(frozen=True)
class Telemetry(Message):
    """Device -> operators: health and performance figures; never biometric data."""

    TYPE: ClassVar[str] = "telemetry"
    device_id: Text
    at: Number
    uptime_s: Number
    frames_per_s: Number
    stage_latency_ms: dict[str, Number]
    queue_depths: dict[str, Integer]
    pack: Text


@dataclass(frozen=True)
class SyncRequest(Message):
    """Device -> matcher (``sync-ack`` topic): "send me what follows ``revision``". Also the
    carrier of the cache digest, and of a snapshot in progress (id, revision, cursor)."""

    TYPE: ClassVar[str] = "sync_request"
    request_id: Id
    device_id: Text
    revision: Revision
    digest: Annotated[Digest, Field(description='sha256 of the cached (subject, pack, revision) lines; "": not '
                                                'checked')] = ""
    snapshot_id: Annotated[str, Strict(), Field(pattern=r"^([0-9a-f]{32})?$")] = ""
    snapshot_revision: Revision = 0
    cursor: Text = ""


@dataclass(frozen=True)
class SyncAck(Message):
    """Device -> matcher: the revision the cache now holds, committed."""

    TYPE: ClassVar[str] = "sync_ack"
    device_id: Text
    revision: Revision
    at: Number


@with_config(STRICT_FIELDS)
class Upsert(TypedDict):
    """A person's entry of a ``Delta`` (one-letter keys: a page carries many)."""

    s: SubjectId  # subject pseudonym
    r: Integer  # revision
    t: NotRequired[Base64]  # template, base64 little-endian float32; absent: no face (credentials only)
    n: Text  # masked display name
    c: Digest  # keyed claim hash of the card (stores.claims)
    p: NotRequired[Text]  # PIN verifier (scrypt), with the card: card + PIN passes offline
    f: NotRequired[Flag]  # refused face recognition


@with_config(STRICT_FIELDS)
class Tombstone(TypedDict):
    """A deletion entry of a ``Delta``."""

    s: SubjectId
    r: Integer


@dataclass(frozen=True)
class Delta(Message):
    """Matcher -> device (``sync`` topic), sealed to that device.

    ``changes``: apply on top of ``base`` (upserts, then tombstones) and hold ``revision``.
    ``snapshot``: one page of the full set at ``revision``, continuing after ``after``; the
    page with ``complete`` replaces the cache in one transaction. ``notice``: the matcher's
    head moved to ``head``; ask for the changes. Upsert entries: ``Upsert``; tombstones:
    ``s``, ``r``. ``claim_key``: the site's claim key (hex) the claims are keyed with."""

    TYPE: ClassVar[str] = "delta"
    WIRE_OPTIONAL: ClassVar[tuple[str, ...]] = ("central", "access", "claim_key")
    request_id: Id
    kind: Literal[SYNC_KINDS]
    base: Revision
    revision: Revision
    head: Revision
    pack_id: Text = ""
    pack_version: Text = ""
    upserts: list[Upsert] = field(default_factory=list)
    tombstones: list[Tombstone] = field(default_factory=list)
    snapshot_id: Text = ""
    after: Text = ""
    cursor: Text = ""
    last: Annotated[Flag, Field(description="the last message of this answer")] = True
    complete: Annotated[Flag, Field(description="snapshot: the last page")] = False
    # the site recorded a justification for central matching (appliance.matcher.site_policy);
    # absent or false: the door decides from its cache and sends no template (fail safe)
    central: Annotated[Flag, Field(description="central matching justified on this site")] = False
    access: dict[str, Any] = field(default_factory=dict)  # {"rules": door's, "people": upserts'} (appliance.access)
    claim_key: Annotated[str, Strict(), Field(pattern=r"^([0-9a-f]{64})?$")] = ""  # sealed to the door only

    @model_validator(mode="after")
    def _rules(self) -> Delta:
        if self.kind == "changes" and self.revision < self.base:
            raise RuleBroken("delta revisions invalid")
        if self.kind == "snapshot" and not REQUEST_ID.match(self.snapshot_id):
            raise RuleBroken("snapshot without an id")
        for entry in (e for e in self.upserts if "t" in e):
            check_template(entry["t"], "delta template", unit=False)
        return self


@dataclass(frozen=True)
class OutboxAck(Message):
    """Matcher -> device: these event/alarm ids are recorded (exactly once); drop them."""

    TYPE: ClassVar[str] = "outbox_ack"
    ids: list[Id]


@dataclass(frozen=True)
class EnrollmentEvent(Message):
    """Matcher -> third-party subscribers: pseudonymous and masked, never a template."""

    TYPE: ClassVar[str] = "enrollment_event"
    event_id: Id
    action: Literal[ENROLLMENT_ACTIONS]
    subject_ref: Annotated[Text, Field(description=(
        "a pseudonym for integrations (keyed hash), not the internal subject id"))]
    display_name: Annotated[Text, Field(description="masked")]
    revision: Integer
    at: Number


MESSAGE_TYPES: dict[str, type[Message]] = {cls.TYPE: cls for cls in (
    MatchRequest, Decision, Event, Alarm, Telemetry, SyncRequest, SyncAck, Delta, OutboxAck, EnrollmentEvent)}


@functools.cache
def _adapter(cls: type[Message]) -> TypeAdapter[Any]:
    """The validator of a message class, built once (decode runs per message)."""
    return TypeAdapter(cls)


# pydantic error types -> the JSON type a field expected
_JSON_TYPES = {"int_type": "an integer", "float_type": "a number", "bool_type": "true/false",
               "string_type": "a string", "list_type": "a list", "dict_type": "an object",
               "dataclass_type": "an object", "typed_dict_type": "an object"}


def _detail(error: dict[str, Any]) -> str:
    """The MESSAGE_REJECTED detail of a pydantic error: the field and what was wrong."""
    kind, name = error["type"], "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])[1:]
    if kind in ("missing_argument", "missing"):
        return f"missing field {name!r}"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"unknown field {name!r}"
    if kind == "value_error" and isinstance(error.get("ctx", {}).get("error"), RuleBroken):
        return str(error["ctx"]["error"])
    if kind in _JSON_TYPES:
        return f"{name}: expected {_JSON_TYPES[kind]}"
    if kind == "string_too_long":
        return f"{name}: longer than {MAX_TEXT}"
    if kind == "string_pattern_mismatch" and error["ctx"]["pattern"] == REQUEST_ID.pattern:
        return f"{name} is not 32 hex digits"
    return f"{name}: {error['msg'][:1].lower()}{error['msg'][1:]}"


def decode(data: bytes, expect: type[Message] | None = None) -> Message:
    """Bytes to a validated message; anything else raises MESSAGE_REJECTED."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise _reject(f"{len(data)} bytes is over the {MAX_MESSAGE_BYTES} limit")
    try:
        # pydantic's own JSON reader: a request's body in ~2 us against ~7 for json.loads (issue
        # 17); it also refuses invalid UTF-8, lone surrogates and nesting over 200 levels
        body = from_json(data, cache_strings="keys")
    except ValueError:
        raise _reject("not UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise _reject("not a JSON object")
    if body.pop("v", None) != PROTOCOL_VERSION:
        raise _reject("unknown protocol version")
    kind = body.pop("type", None)
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None  # a list or object is no type either
    if expect is not None and kind == expect.TYPE:  # a type kept in its own module (protocol.capture_messages)
        cls = expect
    if cls is None or (expect is not None and cls is not expect):
        raise _reject("unexpected message type")
    try:
        return _adapter(cls).validate_python(body)
    except ValidationError as exc:
        raise _reject(_detail(exc.errors(include_url=False)[0])) from None
