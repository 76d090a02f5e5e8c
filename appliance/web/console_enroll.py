"""The enroll page: the consent notice first, then the consent fields, then the face: photos
uploaded here, or a capture at a door the operator chooses (``console_capture``).

The notice shown is the one whose version the form sends back (``notice_version``): the desk
refuses the consent if the notice changed between showing and submitting. Its language is a
choice of the page (``?lang=``), for the person reading it, whatever the console's own language.
Uploads are read with the API's limits (``uploads.read_image_upload``) and enrolled by
``EnrollmentDesk``; a door capture goes through the REST route's own function. Either way
each photo or capture comes back accepted, or with the reason and what to change; a face
already held is refused with "already enrolled as ..." unless a security administrator
overrides it with a reason; a door that is busy, does not capture, saw no face, judged the
face not live or did not answer says so, with what to do next. An enrolled face says where it
works (the outcome's ``usable_at``); a face that opens no door (no justification for central
matching on the site, no local-matching consent) gets a warning box with the reason and what
to do.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from appliance.enrollment import CAPTURES_PER_ATTEMPT
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.enrollment_types import DUPLICATE, ENROLLED, EnrollmentOutcome, EnrollmentRequest
from appliance.security.consent import NOTICE_LANGUAGES, AgeBand, Alternative, notice
from appliance.security.roles import Permission, Principal
from appliance.web import console_capture
from appliance.web.console_base import (NAV, console_page, page_principal, post_principal, problem_text, render,
                                        services)
from appliance.web.console_i18n import say
from appliance.web.http_errors import status_of
from appliance.web.uploads import read_image_upload

router = APIRouter()
ENROLL = next(item for item in NAV if item.path == "/enroll")
DEFAULTS = {"age_band": AgeBand.ADULT.value, "alternative": Alternative.CARD.value, "source": console_capture.UPLOAD}
LANGUAGE_NAMES = {"zh-CN": "中文", "en": "English"}


def _form(request: Request, principal: Principal, language: str, status_code: int = 200, **extra: object) -> Response:
    shown = notice(language if language in NOTICE_LANGUAGES else NOTICE_LANGUAGES[0])
    store = services(request)
    limits = store.config.console
    may_enroll = principal.can(Permission.ENROLL)
    return render(request, "enroll.html", principal, status_code, notice=shown, languages=LANGUAGE_NAMES,
                  age_bands=[b.value for b in AgeBand], alternatives=[a.value for a in Alternative],
                  may_enroll=may_enroll, may_override=principal.can(Permission.OVERRIDE_DUPLICATE),
                  max_images=limits.max_images, max_image_mb=limits.max_image_mb,
                  doors=console_capture.door_choices(store) if may_enroll else [],
                  capture_timeout_s=limits.capture_timeout_s,
                  values={**DEFAULTS, **(extra.pop("values", None) or {})}, **extra)


@router.get("/enroll", include_in_schema=False)
@console_page
def enroll_form(request: Request, lang: str = "") -> Response:
    return _form(request, page_principal(request, ENROLL), lang)


@router.post("/enroll", include_in_schema=False)
@console_page
def enroll(request: Request,
           images: Annotated[list[UploadFile] | None, File()] = None,
           csrf: Annotated[str, Form()] = "",
           language: Annotated[str, Form(max_length=16)] = "",
           notice_version: Annotated[str, Form(max_length=100)] = "",
           consent_given: Annotated[bool, Form()] = False,
           name: Annotated[str, Form(max_length=200)] = "",
           consent_ref: Annotated[str, Form(max_length=200)] = "",
           age_band: Annotated[str, Form(max_length=32)] = AgeBand.ADULT.value,
           alternative: Annotated[str, Form(max_length=32)] = Alternative.CARD.value,
           card_no: Annotated[str, Form(max_length=100)] = "",
           staff_no: Annotated[str, Form(max_length=100)] = "",
           guardian_name: Annotated[str, Form(max_length=200)] = "",
           groups: Annotated[str, Form(max_length=2000)] = "",
           local_matching: Annotated[bool, Form()] = False,
           override_reason: Annotated[str, Form(max_length=500)] = "",
           source: Annotated[str, Form(max_length=16)] = console_capture.UPLOAD,
           door: Annotated[str, Form(max_length=100)] = "") -> Response:
    principal = post_principal(request, csrf, ENROLL)
    values = {"name": name, "consent_ref": consent_ref, "age_band": age_band, "alternative": alternative,
              "card_no": card_no, "staff_no": staff_no, "guardian_name": guardian_name, "groups": groups,
              "local_matching": local_matching, "source": source, "door": door}
    try:
        if not consent_given:
            raise ApplianceError(ErrorCode.CONSENT_MISSING,
                                 say(request, "confirm that the person read the notice and consents before enrolling"))
        if source not in console_capture.SOURCES:
            raise ApplianceError(ErrorCode.CONFIG_INVALID,
                                 say(request, "choose photos to upload or a door to capture at"))
        request_ = EnrollmentRequest(name, consent_ref, age_band, alternative, card_no, staff_no, guardian_name,
                                     tuple(g for g in groups.replace(",", " ").split()), local_matching,
                                     override_reason, notice_version)
        if source == console_capture.DOOR:
            answer = console_capture.capture_enrollment(request, principal, door, request_)
        else:
            files, outcome = _enroll_uploads(request, principal, request_, images or [])
    except ApplianceError as exc:
        return _form(request, principal, language, status_of(exc.code), problem=problem_text(request, exc),
                     values=values)
    if source == console_capture.DOOR:
        if isinstance(answer, console_capture.CaptureRefusal):
            return _form(request, principal, language, 200, capture_refusal=answer, values=values)
        outcome, feedback = answer, console_capture.capture_feedback(door, answer)
    else:
        feedback = photo_feedback(files, outcome)
    kept = {"source": source, "door": door} if outcome.status == ENROLLED else values
    return _form(request, principal, language, 200, outcome=outcome, feedback=feedback, values=kept,
                 duplicate=outcome.status == DUPLICATE, enrolled=outcome.status == ENROLLED,
                 from_door=source == console_capture.DOOR and door)


def _enroll_uploads(request: Request, principal: Principal, enrollment: EnrollmentRequest,
                    images: list[UploadFile]) -> tuple[list[str], EnrollmentOutcome]:
    """The uploaded photos through the desk: the file names in order, and the outcome."""
    store = services(request)
    limits = store.config.console
    chosen = [upload for upload in images if upload.filename]
    if not chosen:
        raise ApplianceError(ErrorCode.ENROLL_FAILED,
                             say(request, "choose the person's photos, or a door to capture at"))
    if len(chosen) > limits.max_images:
        raise ApplianceError(ErrorCode.ENROLL_FAILED, say(request, "%(count)s photos; at most %(most)s",
                                                          count=len(chosen), most=limits.max_images))
    uploads = [read_image_upload(upload, limits.max_image_mb) for upload in chosen]
    labelled = [(f"photo {n}", data) for n, (_, data) in enumerate(uploads, start=1)]
    with store.stores():
        outcome = store.desk().enroll(principal, enrollment, labelled)
    return [file_name for file_name, _ in uploads], outcome


def photo_feedback(files: list[str], outcome: EnrollmentOutcome) -> list[dict]:
    """Each uploaded photo in order: accepted, rejected (reason and guidance) or not needed
    (the policy stopped after the attempt that succeeded)."""
    rejected = {r.image: r for r in outcome.rejected}
    judged = outcome.attempts * CAPTURES_PER_ATTEMPT
    out = []
    for n, file_name in enumerate(files, start=1):
        label = f"photo {n}"
        if label in rejected:
            out.append({"label": label, "n": n, "file": file_name, "verdict": "rejected",
                        "reason": rejected[label].reason.replace("_", " "), "guidance": rejected[label].guidance})
        else:
            out.append({"label": label, "n": n, "file": file_name,
                        "verdict": "accepted" if n <= judged else "not needed", "reason": "", "guidance": ""})
    return out
