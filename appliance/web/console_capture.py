"""Enrollment at a door, from the enroll page: the operator picks a door instead of photos.

The page calls the REST route itself (``api_capture.enroll_capture``), so a capture from
the console and one from ``POST /api/devices/{name}/enroll-capture`` are the same steps -
notice check, the door asked over MQTT, the door's liveness evidence judged again, the
enrollment desk, the audit entries - and end the same ways. This module only turns the
route's answer into what the page shows: the desk's outcome (each capture accepted, or
its reason and what the person should change), or the refusal when nothing reached the
desk (busy, does not capture, no face, not live, no answer) with what to do next.

Whether a door captures for enrollment is set on the door itself (``[device]
enroll_capture``), not known here: the page lists every door that is not revoked and
shows the door's "refused" when it does not.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pydantic
from fastapi import Request

from appliance.broker.pki import IDENTITY
from appliance.enrollment import CAPTURES_PER_ATTEMPT
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.enrollment_types import EnrollmentOutcome, EnrollmentRequest, Rejection, Usability
from appliance.protocol.capture_messages import BUSY, LIVENESS_FAILED, NO_FACE, REFUSED
from appliance.security.consent import AgeBand, Alternative
from appliance.security.roles import Permission, Principal, require
from appliance.web import api_capture, fleet, models
from appliance.web.console_i18n import N_, say
from appliance.web.services import Services

UPLOAD, DOOR = "upload", "door"
SOURCES = (UPLOAD, DOOR)
# what the page says when the door's answer never reached the desk, by the door's answer
# (msgids of the console catalog: the page shows them translated)
REFUSAL_HEADINGS = {
    BUSY: N_("Not captured: the door is busy with another enrollment"),
    REFUSED: N_("Not captured: this door does not capture for enrollment"),
    NO_FACE: N_("Not captured: the door saw no face"),
    LIVENESS_FAILED: N_("Not enrolled: the door could not confirm a live face"),
    api_capture.NO_ANSWER: N_("Not captured: the door did not answer"),
}
LIVENESS_ERROR = ErrorCode.LIVENESS_FAILED.name


@dataclass(frozen=True)
class DoorChoice:
    name: str
    group: str


@dataclass(frozen=True)
class CaptureRefusal:
    """A capture that ended before the desk: what happened and what to do about it."""

    device: str
    device_status: str
    heading: str
    detail: str
    guidance: str
    error: str  # the error's title, e.g. "request timed out"

    @property
    def answered(self) -> str:
        """What the door answered, as a phrase ("nothing" when no answer came)."""
        return "nothing" if self.device_status == api_capture.NO_ANSWER else self.device_status.replace("_", " ")


def door_choices(store: Services) -> list[DoorChoice]:
    """The doors an operator may ask: every provisioned door that is not revoked."""
    with store.stores():
        return [DoorChoice(d.name, d.group) for d in fleet.devices(store) if not d.revoked]


def capture_enrollment(request: Request, principal: Principal, door: str,
                       enrollment: EnrollmentRequest) -> EnrollmentOutcome | CaptureRefusal:
    """Ask ``door`` for an enrollment burst through the REST route's own function; its
    outcome, or the refusal when nothing reached the desk. ApplianceError for what the route
    raises (unknown or revoked door, old notice, no console identity, the desk's refusals)."""
    require(principal, Permission.ENROLL)  # the route's own dependency, which a direct call skips
    if not door:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, say(request, "choose the door where the person stands"))
    if len(door) > api_capture.DEVICE_NAME_CHARS or not IDENTITY.fullmatch(door):
        raise ApplianceError(ErrorCode.PKI_ERROR, say(request, "%(door)s is not a door name",
                                                      door=repr(door[:api_capture.DEVICE_NAME_CHARS])))
    try:
        body = models.EnrollCapture(name=enrollment.name, consent_ref=enrollment.consent_ref,
                                    age_band=AgeBand(enrollment.age_band).value,
                                    alternative=Alternative(enrollment.alternative).value,
                                    card_no=enrollment.card_no, staff_no=enrollment.staff_no,
                                    guardian_name=enrollment.guardian_name, groups=list(enrollment.groups),
                                    local_matching=enrollment.local_matching,
                                    override_reason=enrollment.override_reason,
                                    notice_version=enrollment.notice_version)
    except pydantic.ValidationError as exc:
        fields = ", ".join(".".join(str(part) for part in error["loc"]) for error in exc.errors())
        raise ApplianceError(ErrorCode.CONFIG_INVALID,
                             say(request, "not accepted: %(fields)s", fields=fields)) from None
    answer = api_capture.enroll_capture(request=request, principal=principal, name=door, body=body)
    data = json.loads(answer.body)
    if "error" in data:
        return refusal_of(data)
    rejected = tuple(Rejection(r["image"], r["reason"], r["guidance"]) for r in data["rejected"])
    return EnrollmentOutcome(data["status"], data["subject_id"], data["images_used"], rejected, data["duplicate_of"],
                             data["attempts"], data["overridden"], Usability.from_dict(data.get("usable_at")),
                             tuple(data.get("warnings", ())))


def refusal_of(data: dict) -> CaptureRefusal:
    """The route's ``CaptureRefusal`` body (its detail already masked) as the page shows it."""
    error = data["error"]
    status = LIVENESS_FAILED if error["name"] == LIVENESS_ERROR else data["device_status"]
    heading = REFUSAL_HEADINGS.get(status, f"Not captured: {error['title']}")
    return CaptureRefusal(data["device"], data["device_status"], heading, error["detail"],
                          data["guidance"], error["title"])


def capture_feedback(device: str, outcome: EnrollmentOutcome) -> list[dict]:
    """Each capture the door judged, in order: accepted, or rejected with the reason and what
    the person should change. The door numbers its captures; only the rejected ones come
    back by number, the rest of those taken were accepted."""
    rejected = {int(r.image): r for r in outcome.rejected if r.image.isdigit()}
    taken = outcome.images_used + len(rejected) if outcome.images_used else outcome.attempts * CAPTURES_PER_ATTEMPT
    taken = max([taken, *rejected])
    out = []
    for n in range(1, taken + 1):
        if n in rejected:
            out.append({"label": f"capture {n}", "n": n, "file": device, "verdict": "rejected",
                        "reason": rejected[n].reason.replace("_", " "), "guidance": rejected[n].guidance})
        else:
            out.append({"label": f"capture {n}", "n": n, "file": device, "verdict": "accepted", "reason": "",
                        "guidance": ""})
    return out
