"""The field types every protocol message is declared with (``appliance.protocol.messages``
and the message modules beside it), and the check of a template field: pydantic validates
the types, the messages' rules joining fields raise ``RuleBroken`` with the refusal's text."""
from __future__ import annotations

import base64
import math
import re
from typing import Annotated

import numpy as np
from pydantic import ConfigDict, Field, Strict

MAX_TEXT = 256
MAX_TEMPLATE_DIMENSION = 2048
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
SUBJECT_ID = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")
DIGEST = re.compile(r"^([0-9a-f]{64})?$")

# Field types. Strict: a JSON value of another type is refused, never converted (an integer
# is accepted, as a float, where a number is expected).
# finite only: the JSON reader takes NaN and Infinity, which no field of the protocol means
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Integer = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict(), Field(max_length=MAX_TEXT)]
Base64 = Annotated[str, Strict()]  # a template: bounded by MAX_MESSAGE_BYTES only
Id = Annotated[str, Strict(), Field(pattern=REQUEST_ID.pattern)]  # 32 hex digits, as new_id() makes
Revision = Annotated[int, Strict(), Field(ge=0)]
Digest = Annotated[str, Strict(), Field(pattern=DIGEST.pattern)]  # sha256 hex, or "" (not given)
SubjectId = Annotated[str, Strict(), Field(pattern=SUBJECT_ID.pattern)]
MaybeSubjectId = Annotated[str, Strict(), Field(pattern=f"^({SUBJECT_ID.pattern[1:-1]})?$")]  # "" = nobody
Signature = Annotated[str, Strict(), Field(pattern=r"^([0-9a-f]{128})?$")]  # Ed25519, hex; "" = unsigned

# Unknown fields are refused.
STRICT_FIELDS = ConfigDict(extra="forbid")


class RuleBroken(ValueError):
    """The refusal of a rule joining fields; its text is the MESSAGE_REJECTED detail."""


def read_template(template_b64: str, name: str) -> np.ndarray:
    """The template as little-endian float32 (read-only); refuse what is not base64 of those."""
    try:
        return np.frombuffer(base64.b64decode(template_b64, validate=True), dtype="<f4")
    except ValueError:
        raise RuleBroken(f"{name} is not base64 float32") from None


def check_vector(vector: np.ndarray, name: str, unit: bool) -> None:
    """Refuse a template of an insane size, not finite (or not unit length). One float64 dot
    product checks both: float32 squares cannot overflow it, so the sum is finite iff every
    value is (no ``np.errstate`` per request: issue 17)."""
    square = float(np.dot(vector, vector.astype(np.float64))) if 0 < len(vector) <= MAX_TEMPLATE_DIMENSION else math.nan
    if not math.isfinite(square):
        raise RuleBroken(f"{name} size or values invalid")
    if unit and abs(math.sqrt(square) - 1.0) > 1e-3:
        raise RuleBroken(f"{name} is not unit length")


def check_template(template_b64: str, name: str, unit: bool) -> None:
    """Refuse what is not base64 little-endian float32 of a sane size, finite (and unit length)."""
    check_vector(read_template(template_b64, name), name, unit)
