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
    ALL = (MATCH, NO_MATCH, UNKNOWN_CLAIM, LIVENESS_FAILED, LOCKED_OUT, BAD_REQUEST, PACK_MISMATCH)


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


MESSAGE_TYPES: dict[str, type[Message]] = {cls.TYPE: cls for cls in (MatchRequest, Decision, Event, Alarm, Telemetry)}


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
    if origin is dict:
        if not isinstance(value, dict):
            raise _reject(f"{name}: expected an object")
        _, inner = typing.get_args(annotation)
        return {str(k): (v if inner is Any else _check(v, inner, f"{name}.{k}")) for k, v in value.items()}
    return value


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
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
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
