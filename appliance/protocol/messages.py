"""Typed, validated protocol messages (the payloads inside sealed envelopes).

Each message is a frozen dataclass serialised as compact UTF-8 JSON with a ``type`` and a
protocol version ``v``. Decoding is strict: unknown or missing fields, wrong types, oversized
values and unknown versions are refused with MESSAGE_REJECTED - a malformed message never
reaches service logic. A decision carries accept/reject, a masked display name and a reason
code: never a score, never a template.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import json
import re
import typing
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from appliance.errors import ApplianceError, ErrorCode

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 48 * 1024
MAX_TEXT = 256
MAX_TEMPLATE_DIMENSION = 2048
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


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
    ALL = (MATCH, NO_MATCH, UNKNOWN_CLAIM, LIVENESS_FAILED, LOCKED_OUT, BAD_REQUEST, PACK_MISMATCH, UNAVAILABLE)


@dataclass(frozen=True)
class Message:
    TYPE: ClassVar[str] = ""

    def encode(self) -> bytes:
        body = {"v": PROTOCOL_VERSION, "type": self.TYPE, **dataclasses.asdict(self)}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class MatchRequest(Message):
    """Device -> matcher: a probe template for 1:1 (``claim`` set) or 1:N identification."""

    TYPE: ClassVar[str] = "match_request"
    request_id: str
    device_id: str
    mode: str  # "verify" | "identify"
    template_b64: str  # little-endian float32, unit length
    captured_at: float
    claim: str = ""  # card / PIN / QR credential for 1:1 verification
    attempt: int = 1
    liveness: dict[str, Any] = field(default_factory=dict)  # signed evidence summary, never images

    def vector(self) -> np.ndarray:
        raw = base64.b64decode(self.template_b64, validate=True)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)

    @staticmethod
    def pack_vector(vector: np.ndarray) -> str:
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")

    def validate(self) -> None:
        if self.mode not in ("verify", "identify"):
            raise _reject(f"mode {self.mode!r}")
        if self.mode == "verify" and not self.claim:
            raise _reject("verify needs a claim")
        try:
            vector = self.vector()
        except ValueError:
            raise _reject("template is not base64 float32") from None
        if not 0 < len(vector) <= MAX_TEMPLATE_DIMENSION or not np.all(np.isfinite(vector)):
            raise _reject("template size or values invalid")
        if abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
            raise _reject("template is not unit length")


@dataclass(frozen=True)
class Decision(Message):
    """Matcher -> device: the answer. Pass/fail and why; never a score."""

    TYPE: ClassVar[str] = "decision"
    request_id: str
    accepted: bool
    reason: str
    display_name: str = ""  # masked
    retry_after_s: float = 0.0

    def validate(self) -> None:
        if self.reason not in Reason.ALL:
            raise _reject(f"reason {self.reason!r}")
        if self.accepted and self.reason != Reason.MATCH:
            raise _reject(f"an accepted decision with reason {self.reason!r}")


@dataclass(frozen=True)
class Event(Message):
    """Device -> matcher: an access event (pass outcome, tailgating, door state)."""

    TYPE: ClassVar[str] = "event"
    event_id: str
    device_id: str
    kind: str
    at: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Alarm(Message):
    """Device -> matcher: a security alarm (presentation attack, tamper, forced door)."""

    TYPE: ClassVar[str] = "alarm"
    alarm_id: str
    device_id: str
    kind: str
    at: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Telemetry(Message):
    """Device -> operators: health and performance figures; never biometric data."""

    TYPE: ClassVar[str] = "telemetry"
    device_id: str
    at: float
    uptime_s: float
    frames_per_s: float
    stage_latency_ms: dict[str, float]
    queue_depths: dict[str, int]
    pack: str


SUBJECT_ID = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")
DIGEST = re.compile(r"^([0-9a-f]{64})?$")
SYNC_KINDS = ("changes", "snapshot", "notice")
ENROLLMENT_ACTIONS = ("enrolled", "deleted")


@dataclass(frozen=True)
class SyncRequest(Message):
    """Device -> matcher (``sync-ack`` topic): "send me what follows ``revision``". Also the
    carrier of the cache digest, and of a snapshot in progress (id, revision, cursor)."""

    TYPE: ClassVar[str] = "sync_request"
    request_id: str
    device_id: str
    revision: int
    digest: str = ""  # sha256 of the cached (subject, pack, revision) lines; "" = not checked
    snapshot_id: str = ""
    snapshot_revision: int = 0
    cursor: str = ""

    def validate(self) -> None:
        if self.revision < 0 or self.snapshot_revision < 0 or not DIGEST.match(self.digest):
            raise _reject("sync request revision or digest invalid")
        if self.snapshot_id and not REQUEST_ID.match(self.snapshot_id):
            raise _reject("snapshot_id is not 32 hex digits")


@dataclass(frozen=True)
class SyncAck(Message):
    """Device -> matcher: the revision the cache now holds, committed."""

    TYPE: ClassVar[str] = "sync_ack"
    device_id: str
    revision: int
    at: float

    def validate(self) -> None:
        if self.revision < 0:
            raise _reject("negative revision")


@dataclass(frozen=True)
class Delta(Message):
    """Matcher -> device (``sync`` topic), sealed to that device.

    ``changes``: apply on top of ``base`` (upserts, then tombstones) and hold ``revision``.
    ``snapshot``: one page of the full set at ``revision``, continuing after ``after``; the
    page with ``complete`` replaces the cache in one transaction. ``notice``: the matcher's
    head moved to ``head``; ask for the changes. Upsert entries: ``s`` subject pseudonym,
    ``r`` revision, ``t`` template (base64 float32), ``n`` masked name, ``c`` claim hash.
    Tombstones: ``s``, ``r``."""

    TYPE: ClassVar[str] = "delta"
    request_id: str
    kind: str
    base: int
    revision: int
    head: int
    pack_id: str = ""
    pack_version: str = ""
    upserts: list[dict[str, Any]] = field(default_factory=list)
    tombstones: list[dict[str, Any]] = field(default_factory=list)
    snapshot_id: str = ""
    after: str = ""
    cursor: str = ""
    last: bool = True  # the last message of this answer
    complete: bool = False  # snapshot: the last page

    def validate(self) -> None:
        if self.kind not in SYNC_KINDS:
            raise _reject(f"delta kind {self.kind!r}")
        if min(self.base, self.revision, self.head) < 0 or (self.kind == "changes" and self.revision < self.base):
            raise _reject("delta revisions invalid")
        if self.kind == "snapshot" and not REQUEST_ID.match(self.snapshot_id):
            raise _reject("snapshot without an id")
        for entry in self.upserts:
            if set(entry) != {"s", "r", "t", "n", "c"} or not isinstance(entry["s"], str) \
                    or not SUBJECT_ID.match(entry["s"]) or not isinstance(entry["r"], int) \
                    or isinstance(entry["r"], bool) or not isinstance(entry["t"], str) \
                    or not isinstance(entry["n"], str) or len(entry["n"]) > MAX_TEXT \
                    or not isinstance(entry["c"], str) or not DIGEST.match(entry["c"]):
                raise _reject("delta upsert entry invalid")
            try:
                vector = np.frombuffer(base64.b64decode(entry["t"], validate=True), dtype="<f4")
            except ValueError:
                raise _reject("delta template is not base64 float32") from None
            if not 0 < len(vector) <= MAX_TEMPLATE_DIMENSION or not np.all(np.isfinite(vector)):
                raise _reject("delta template size or values invalid")
        for entry in self.tombstones:
            if set(entry) != {"s", "r"} or not isinstance(entry["s"], str) or not SUBJECT_ID.match(entry["s"]) \
                    or not isinstance(entry["r"], int) or isinstance(entry["r"], bool):
                raise _reject("delta tombstone entry invalid")


@dataclass(frozen=True)
class OutboxAck(Message):
    """Matcher -> device: these event/alarm ids are recorded (exactly once); drop them."""

    TYPE: ClassVar[str] = "outbox_ack"
    ids: list[str]

    def validate(self) -> None:
        if not all(isinstance(i, str) and REQUEST_ID.match(i) for i in self.ids):
            raise _reject("outbox ack ids invalid")


@dataclass(frozen=True)
class EnrollmentEvent(Message):
    """Matcher -> third-party subscribers: pseudonymous and masked, never a template."""

    TYPE: ClassVar[str] = "enrollment_event"
    event_id: str
    action: str  # enrolled | deleted
    subject_ref: str  # a pseudonym for integrations (keyed hash), not the internal subject id
    display_name: str  # masked
    revision: int
    at: float

    def validate(self) -> None:
        if self.action not in ENROLLMENT_ACTIONS:
            raise _reject(f"action {self.action!r}")


MESSAGE_TYPES: dict[str, type[Message]] = {cls.TYPE: cls for cls in (
    MatchRequest, Decision, Event, Alarm, Telemetry, SyncRequest, SyncAck, Delta, OutboxAck, EnrollmentEvent)}


def _check(value: Any, annotation: Any, name: str) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _reject(f"{name}: expected a number")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _reject(f"{name}: expected an integer")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise _reject(f"{name}: expected true/false")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise _reject(f"{name}: expected a string")
        if len(value) > MAX_TEXT and not name.endswith("_b64"):
            raise _reject(f"{name}: longer than {MAX_TEXT}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise _reject(f"{name}: expected a list")
        (inner,) = typing.get_args(annotation)
        return [_check(v, inner, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _reject(f"{name}: expected an object")
        _, inner = typing.get_args(annotation)
        return {str(k): (v if inner is Any else _check(v, inner, f"{name}.{k}")) for k, v in value.items()}
    return value


@functools.cache
def _schema(cls: type[Message]) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """Field types and specs of a message class, resolved once (decode runs per message)."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def decode(data: bytes, expect: type[Message] | None = None) -> Message:
    """Bytes to a validated message; anything else raises MESSAGE_REJECTED."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise _reject(f"{len(data)} bytes is over the {MAX_MESSAGE_BYTES} limit")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise _reject("not UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise _reject("not a JSON object")
    if body.pop("v", None) != PROTOCOL_VERSION:
        raise _reject("unknown protocol version")
    cls = MESSAGE_TYPES.get(body.pop("type", None))
    if cls is None or (expect is not None and cls is not expect):
        raise _reject("unexpected message type")
    hints, fields = _schema(cls)
    unknown = set(body) - set(fields)
    if unknown:
        raise _reject(f"unknown field {sorted(unknown)[0]!r}")
    values = {}
    for name, spec in fields.items():
        if name in body:
            values[name] = _check(body[name], hints[name], name)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise _reject(f"missing field {name!r}")
    for id_field in ("request_id", "event_id", "alarm_id"):
        if id_field in values and not REQUEST_ID.match(values[id_field]):
            raise _reject(f"{id_field} is not 32 hex digits")
    message = cls(**values)
    validate = getattr(message, "validate", None)
    if validate:
        validate()
    return message
