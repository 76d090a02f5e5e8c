"""``POST /api/devices/{name}/enroll-capture``: enroll a person from a door's camera.

The operator fills in the same consent and person fields as for an upload
(``POST /api/people``); the console asks the door for an enrollment burst over MQTT
(``Services.capture()``: the console's ``CaptureClient``), the door shows the person what to
do while it captures, and its answer goes through the same gate and desk as every
enrollment: ``CaptureClient.as_enrollment`` judges the door's liveness evidence again, then
``EnrollmentDesk.enroll_templates`` applies consent, duplicates and storage. The answer is
the upload's (201 enrolled, 409 duplicate, 422 failed to enrol with each rejected capture's
guidance) or, when nothing reached the desk, a ``CaptureRefusal`` naming what the door said
and what to tell the person.

The request is checked (fields, notice version) before anyone is asked to stand in front of
a camera. The route is sync, so FastAPI runs it in its thread pool, and it waits for the
door without ``Services.stores()``: other requests go on meanwhile. The audit log gets
``enrollment.capture`` entries with the device as object (who asked, what the door
answered; the desk's own entries carry the new pseudonym) - refusals too, since a refusal
before the desk (no answer, liveness) leaves no desk entry.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from appliance.broker.pki import IDENTITY
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.enrollment_types import DUPLICATE, ENROLLED, EnrollmentRequest
from appliance.protocol.capture_messages import BUSY, LIVENESS_FAILED_GUIDANCE, NO_FACE, REFUSED, CaptureResult
from appliance.security.consent import notice
from appliance.security.roles import Permission, Principal
from appliance.vision.quality import NO_FACE as NO_FACE_ISSUE
from appliance.web import models
from appliance.web.auth import allowed, services_of
from appliance.web.http_errors import error_body
from appliance.web.services import Services

router = APIRouter(prefix="/api", tags=["devices"])
CREATED, CONFLICT, UNPROCESSABLE, GATEWAY_TIMEOUT = 201, 409, 422, 504
STATUS_OF_OUTCOME = {ENROLLED: CREATED, DUPLICATE: CONFLICT}  # anything else: failed to enrol
ACTION = "enrollment.capture"
NO_ANSWER = "no_answer"
DEVICE_NAME_CHARS = 63
Enrolls = Annotated[Principal, Depends(allowed(Permission.ENROLL))]
DeviceName = Annotated[str, Path(pattern=IDENTITY.pattern, max_length=DEVICE_NAME_CHARS,
                                 description="the door, as provisioned ('appliance provision device NAME')")]
RESPONSES = {
    CONFLICT: {"model": models.Enrollment | models.CaptureRefusal,
               "description": "the face is already enrolled, or the door is busy or does not capture"},
    UNPROCESSABLE: {"model": models.Enrollment | models.CaptureRefusal,
                    "description": "no capture passed the quality profile, no face, or not judged live"},
    GATEWAY_TIMEOUT: {"model": models.CaptureRefusal, "description": "the door did not answer in time"},
}
# the door answered, but nothing to enroll: (code, HTTP status, what happened, what to do)
DOOR_REFUSALS = {
    BUSY: (ErrorCode.MESSAGE_REJECTED, CONFLICT, "{device} is busy with another enrollment capture",
           "wait until the enrollment under way at this door is done, then ask again"),
    REFUSED: (ErrorCode.MESSAGE_REJECTED, CONFLICT, "{device} does not capture for enrollment",
              "switch it on for the door ([device] enroll_capture = true, with a liveness.level other than "
              "off), or use another door"),
    NO_FACE: (ErrorCode.NO_FACE, UNPROCESSABLE, "{device} saw no face in time", NO_FACE_ISSUE.guidance),
}
NO_ANSWER_GUIDANCE = "check that the door is online and running, then ask again"
BROKER_REFUSED_GUIDANCE = ("restart the broker (appliance-broker.service) so it grants the console's identity its "
                           "rights")


@router.post("/devices/{name}/enroll-capture", response_model=models.Enrollment, status_code=CREATED,
             responses=RESPONSES, summary="Enroll a person from a door's camera (the door guides them meanwhile)")
def enroll_capture(request: Request, principal: Enrolls, name: DeviceName,
                   body: models.EnrollCapture) -> JSONResponse:
    services = services_of(request)
    enrollment = EnrollmentRequest(body.name, body.consent_ref, body.age_band, body.alternative, body.card_no,
                                   body.staff_no, body.guardian_name, tuple(body.groups), body.local_matching,
                                   body.override_reason, body.notice_version)
    version = _current_notice(enrollment)
    timeout_s = _timeout(services, body.timeout_s)
    _audit(services, principal, name, "requested", f"{body.frames} captures within {timeout_s:.1f} s; "
                                                   f"notice {version}")
    try:
        result = services.capture().request(name, principal.actor, version, body.frames, timeout_s)
    except ApplianceError as exc:
        timed_out = exc.code is ErrorCode.REQUEST_TIMEOUT
        _audit(services, principal, name, NO_ANSWER if timed_out else "refused", exc.code.name)
        if timed_out:
            return _refusal(exc.code, GATEWAY_TIMEOUT, exc.detail, name, NO_ANSWER, NO_ANSWER_GUIDANCE)
        if exc.code is ErrorCode.MESSAGE_REJECTED:  # the broker's ACL: the console's rights not granted yet
            return _refusal(exc.code, CONFLICT, exc.detail, name, NO_ANSWER, BROKER_REFUSED_GUIDANCE)
        raise
    return _enroll(services, principal, name, enrollment, result)


def _enroll(services: Services, principal: Principal, device: str, enrollment: EnrollmentRequest,
            result: CaptureResult) -> JSONResponse:
    """The door's answer through the gate and the desk, every ending in the audit log."""
    if result.status in DOOR_REFUSALS:
        code, status, what, guidance = DOOR_REFUSALS[result.status]
        _audit(services, principal, device, result.status, code.name)
        return _refusal(code, status, what.format(device=device), device, result.status, guidance)
    client = services.capture()
    try:
        captured = client.as_enrollment(result)
    except ApplianceError as exc:  # LIVENESS_FAILED: nothing reaches the desk
        _audit(services, principal, device, "liveness_failed", exc.code.name)
        return _refusal(exc.code, UNPROCESSABLE, exc.detail, device, result.status, LIVENESS_FAILED_GUIDANCE)
    with services.stores():
        try:
            outcome = services.desk().enroll_templates(principal, enrollment, captured)
        except ApplianceError as exc:
            _audit(services, principal, device, "refused", exc.code.name)
            raise
        _audit(services, principal, device, outcome.status,
               f"subject {outcome.subject_id}" if outcome.subject_id else f"door answered {result.status}")
    body = models.Enrollment(**outcome.as_dict())
    return JSONResponse(body.model_dump(), status_code=STATUS_OF_OUTCOME.get(outcome.status, UNPROCESSABLE))


def _current_notice(enrollment: EnrollmentRequest) -> str:
    """The notice version the door is told the person was shown; CONSENT_MISSING for an older
    one (as the desk would refuse it, but before the person stands at the door for nothing)."""
    current = notice().version
    if enrollment.notice_version and enrollment.notice_version != current:
        raise ApplianceError(ErrorCode.CONSENT_MISSING, f"consent given on notice version "
                             f"{enrollment.notice_version!r}; the current notice is {current!r}")
    return current


def _timeout(services: Services, asked: float | None) -> float:
    limit = services.config.console.capture_timeout_s
    if asked is not None and asked > limit:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"timeout_s {asked:g}: at most [console] capture_timeout_s "
                                                       f"({limit:g} s)")
    return float(asked if asked is not None else limit)


def _audit(services: Services, principal: Principal, device: str, result: str, detail: str) -> None:
    with services.stores():
        services.data.audit.append(principal, ACTION, device, result, detail)


def _refusal(code: ErrorCode, status: int, detail: str, device: str, device_status: str,
             guidance: str) -> JSONResponse:
    body = models.CaptureRefusal(**error_body(code, detail), device=device, device_status=device_status,
                                 guidance=guidance)
    return JSONResponse(body.model_dump(), status_code=status)
