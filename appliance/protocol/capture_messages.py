"""The messages of enrollment from a door camera (``enroll-capture`` / ``enroll-result``).

A console asks one device for an enrollment burst (``CaptureRequest``); the device answers
with the reference template the enrollment policy fused from the captures that passed the
enrollment quality profile and a reason code with its guidance for each one that did not
(``CaptureResult``) - never an image - with the signed liveness evidence of each capture
used (``appliance.liveness.evidence``: scores and results, no pixels), which the central side
judges again before anything is enrolled (``matcher.capture_client.as_enrollment``). Both
travel sealed like every template (``security.envelope``, types CAPTURE_REQUEST and
CAPTURE_RESULT) and are decoded strictly by ``messages.decode(data, CaptureResult)``, with the
field types and rules of ``appliance.protocol.messages``. They live here, not in the
registry of ``messages``, so that only the parties of a capture know them: a matcher handed
one refuses it as an unexpected type.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator, with_config

from appliance.protocol.messages import (
    STRICT_FIELDS, Base64, Id, Integer, Message, Number, Text, TypedDict, RuleBroken, check_template,
)

OK, NO_FACE, TIMEOUT, BUSY, REFUSED = "ok", "no_face", "timeout", "busy", "refused"
LIVENESS_FAILED = "liveness_failed"
# ok: the burst was taken (its templates and rejections say how it went); no_face: nobody came
# in front of the camera in time; timeout: the time ran out during the burst (what was taken
# comes back); busy: another capture is running; refused: this door does not capture for
# enrollment ([device] enroll_capture), or cannot check liveness (liveness.level "off");
# liveness_failed: a capture that passed quality was judged not live (a photo, a screen, a mask,
# or an unfinished challenge): the burst stops there and nothing comes back to enroll.
CAPTURE_STATUSES = (OK, NO_FACE, TIMEOUT, BUSY, REFUSED, LIVENESS_FAILED)
WITHOUT_CAPTURE = (NO_FACE, BUSY, REFUSED, LIVENESS_FAILED)  # answers that never carry a template
LIVENESS_FAILED_GUIDANCE = ("We could not confirm a live face. Please put away any photo, screen or mask, "
                            "and ask staff to start the enrollment again.")
EVIDENCE_PURPOSE = "enrollment_capture"  # in every signed summary of a capture: not a door pass's evidence
MAX_CAPTURE_FRAMES = 9  # the enrollment policy's most: 3 attempts of 3 captures
MAX_CAPTURE_TIMEOUT_S = 300.0  # the person waits at the door: minutes, not hours


@dataclass(frozen=True)
class CaptureRequest(Message):
    """Console -> one device (its ``enroll-capture`` topic): take ``frames`` enrollment
    captures within ``timeout_s``, for the account ``requested_by``; the person was shown the
    consent notice ``notice_version``."""

    TYPE: ClassVar[str] = "capture_request"
    request_id: Id
    device_id: Text
    frames: Annotated[Integer, Field(ge=1, le=MAX_CAPTURE_FRAMES)]
    timeout_s: Annotated[Number, Field(gt=0, le=MAX_CAPTURE_TIMEOUT_S)]
    requested_by: Annotated[Text, Field(min_length=1, description="the console account that asked")]
    notice_version: Annotated[Text, Field(min_length=1, description="the consent notice the person was shown")]


@with_config(STRICT_FIELDS)
class CaptureRejection(TypedDict):
    """A capture that failed the enrollment profile."""

    capture: Integer  # its number in the burst, from 1
    reason: Text  # the quality code (``vision.quality``): "no_face", "pose", "sharpness", ...
    guidance: Text  # what the person was told to change


@with_config(STRICT_FIELDS)
class EvidenceForm(TypedDict):
    """Signed liveness evidence in transport form (``SignedEvidence.as_dict``)."""

    payload: Base64  # canonical JSON of the summary: scores, results, timestamps, the request id
    signature: Base64
    key_id: Text
    alg: Literal["Ed25519"]


@dataclass(frozen=True)
class CaptureResult(Message):
    """Device -> console (the device's own ``enroll-result`` topic): the reference template the
    enrollment policy fused from the ``used`` accepted captures (base64 little-endian float32,
    unit length, of the pack named; "" when none passed), the rejected captures and the signed
    liveness evidence: one per capture used, in order (none from a door that does not judge
    liveness; the failing one in a ``liveness_failed`` answer)."""

    TYPE: ClassVar[str] = "capture_result"
    request_id: Id
    device_id: Text
    status: Literal[CAPTURE_STATUSES]
    template: Base64 = ""
    pack_id: Text = ""
    pack_version: Text = ""
    used: Annotated[Integer, Field(ge=0)] = 0
    quality: Annotated[list[Number], Field(description="the quality score (0-100) of each capture used")] = \
        field(default_factory=list)
    attempts: Annotated[Integer, Field(ge=0, description="attempts of the policy started")] = 0
    rejections: list[CaptureRejection] = field(default_factory=list)
    liveness: list[EvidenceForm] = field(default_factory=list)

    @model_validator(mode="after")
    def _rules(self) -> CaptureResult:
        if self.used + len(self.rejections) > MAX_CAPTURE_FRAMES or len(self.quality) != self.used:
            raise RuleBroken(f"more than {MAX_CAPTURE_FRAMES} captures, or not one quality score per capture used")
        if bool(self.template) != (self.used > 0) or (self.template and self.status in WITHOUT_CAPTURE):
            raise RuleBroken(f"a {self.status!r} answer with {self.used} captures used and "
                             f"{'a' if self.template else 'no'} template")
        if self.template:
            if not (self.pack_id and self.pack_version):
                raise RuleBroken("a template without its pack")
            check_template(self.template, "capture template", unit=True)
        if len(self.liveness) > max(self.used, self.status == LIVENESS_FAILED):
            raise RuleBroken(f"{len(self.liveness)} liveness evidence for {self.used} captures used")
        return self

    def vector(self) -> np.ndarray | None:
        """The reference template as a float32 vector; None when no capture passed."""
        if not self.template:
            return None
        return np.frombuffer(base64.b64decode(self.template, validate=True), dtype="<f4").astype(np.float32)

    @staticmethod
    def pack_vector(vector: np.ndarray) -> str:
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
