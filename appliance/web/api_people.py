"""``/api/people``, ``/api/identify``, ``/api/verify``: the enrollment desk over HTTP.

Every route calls ``EnrollmentDesk`` or ``ProtectedData`` (the same calls as the command
line), inside ``Services.stores()``. Names leave masked; ``unmasked=true`` on one person is
``ProtectedData.reveal`` (a security administrator's right, in the audit log). Each person
and each enrollment says where the face works (``usable_at``; an enrollment whose face works
nowhere carries the reason in ``warnings``: ``EnrollmentDesk.usability``). A name may
be searched with ``q`` in the query string (never logged: the access log drops query
strings) but ``POST /api/people/search`` keeps it out of URLs altogether.
"""
from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.enrollment_types import DUPLICATE, ENROLLED, MATCH, NO_MATCH, EnrollmentRequest
from appliance.security.consent import AgeBand, Alternative
from appliance.security.roles import Permission as P
from appliance.security.roles import Principal
from appliance.web import models
from appliance.web.auth import allowed, services_of
from appliance.web.uploads import read_image_upload

router = APIRouter(prefix="/api", tags=["people"])
CREATED, CONFLICT, UNPROCESSABLE = 201, 409, 422
STATUS_OF_OUTCOME = {ENROLLED: CREATED, DUPLICATE: CONFLICT}  # anything else: failed to enrol
AgeBandValue = Literal[tuple(b.value for b in AgeBand)]
AlternativeValue = Literal[tuple(a.value for a in Alternative)]
ReadsPeople = Annotated[Principal, Depends(allowed(P.READ_IDENTITY_MASKED))]
ReadsPerson = Annotated[Principal, Depends(allowed(P.READ_IDENTITY_MASKED, P.READ_IDENTITY_UNMASKED))]
Enrolls = Annotated[Principal, Depends(allowed(P.ENROLL, P.OVERRIDE_DUPLICATE))]
SetsGroups = Annotated[Principal, Depends(allowed(P.ENROLL))]
Deletes = Annotated[Principal, Depends(allowed(P.DELETE_SUBJECT))]
Verifies = Annotated[Principal, Depends(allowed(P.VERIFY))]
OUTCOME_RESPONSES = {CONFLICT: {"model": models.Enrollment, "description": "the face is already enrolled"},
                     UNPROCESSABLE: {"model": models.Enrollment, "description": "no image passed the quality profile"}}


def _page(request: Request, principal: Principal, q: str, offset: int, limit: int) -> models.PeoplePage:
    services = services_of(request)
    with services.stores():
        rows, total = services.desk().people_page(principal, q, offset, limit)
    return models.PeoplePage(items=[models.Person(**row) for row in rows], total=total, offset=offset, limit=limit)


@router.get("/people", response_model=models.PeoplePage, summary="People, masked, newest first")
def list_people(request: Request, principal: ReadsPeople,
                q: Annotated[str, Query(max_length=models.MAX_QUERY_CHARS)] = "",
                offset: Annotated[int, Query(ge=0)] = 0,
                limit: Annotated[int, Query(ge=1, le=models.MAX_PEOPLE_PAGE)] = models.DEFAULT_PAGE
                ) -> models.PeoplePage:
    return _page(request, principal, q, offset, limit)


@router.post("/people/search", response_model=models.PeoplePage, summary="Search people (name kept out of URLs)")
def search_people(request: Request, principal: ReadsPeople, search: models.PeopleSearch) -> models.PeoplePage:
    return _page(request, principal, search.q, search.offset, search.limit)


@router.get("/people/{subject_id}", response_model=models.Person, summary="One person (masked unless unmasked=true)")
def get_person(request: Request, principal: ReadsPerson, subject_id: str, unmasked: bool = False) -> models.Person:
    services = services_of(request)
    with services.stores():
        if unmasked:
            record = services.desk().with_usability(principal, services.data.reveal(principal, subject_id))
        else:
            record = services.desk().person(principal, subject_id)
    return models.Person(**record)


@router.post("/people", response_model=models.Enrollment, status_code=CREATED, responses=OUTCOME_RESPONSES,
             summary="Register a person with consent and enroll from uploaded images")
def enroll_person(
    request: Request, principal: Enrolls,
    name: Annotated[str, Form(max_length=200)],
    consent_ref: Annotated[str, Form(max_length=200)],
    images: Annotated[list[UploadFile], File(description="face images (JPEG, PNG, ...), one capture each")],
    age_band: Annotated[AgeBandValue, Form()] = AgeBand.ADULT.value,
    alternative: Annotated[AlternativeValue, Form()] = Alternative.CARD.value,
    card_no: Annotated[str, Form(max_length=100)] = "",
    staff_no: Annotated[str, Form(max_length=100)] = "",
    guardian_name: Annotated[str, Form(max_length=200)] = "",
    groups: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies form defaults
    local_matching: Annotated[bool, Form()] = False,
    override_reason: Annotated[str, Form(max_length=500)] = "",
    notice_version: Annotated[str, Form(max_length=100)] = "",
) -> JSONResponse:
    services = services_of(request)
    limits = services.config.console
    if len(images) > limits.max_images:
        raise ApplianceError(ErrorCode.ENROLL_FAILED, f"{len(images)} images; at most {limits.max_images}")
    uploads = [read_image_upload(upload, limits.max_image_mb) for upload in images]
    enrollment = EnrollmentRequest(name, consent_ref, age_band, alternative, card_no, staff_no, guardian_name,
                                   tuple(groups), local_matching, override_reason, notice_version)
    with services.stores():
        outcome = services.desk().enroll(principal, enrollment, uploads)
    body = models.Enrollment(**outcome.as_dict())
    return JSONResponse(body.model_dump(), status_code=STATUS_OF_OUTCOME.get(outcome.status, UNPROCESSABLE))


@router.put("/people/{subject_id}/groups", response_model=models.SubjectGroups,
            summary="Door groups whose devices may hold the person (none: all)")
def set_groups(request: Request, principal: SetsGroups, subject_id: str, groups: models.Groups) -> models.SubjectGroups:
    # checked as an enrollment checks them (names, count); the name is a placeholder the
    # check needs, never stored
    checked = EnrollmentRequest("-", "-", groups=tuple(groups.groups)).groups
    services = services_of(request)
    with services.stores():
        services.data.identity.person(principal, subject_id)  # SUBJECT_NOT_FOUND (404) first
        services.sync.assign_groups(subject_id, checked)
        services.data.audit.append(principal, "subject.groups", subject_id, "ok", f"{len(checked)} door groups")
    return models.SubjectGroups(subject_id=subject_id, groups=list(checked))


@router.delete("/people/{subject_id}", response_model=models.Deletion,
               summary="Delete a person everywhere (crypto-shredding); the signed receipt")
def delete_person(request: Request, principal: Deletes, subject_id: str) -> models.Deletion:
    services = services_of(request)
    with services.stores():
        receipt = services.data.delete_subject(principal, subject_id)
    return models.Deletion(receipt=json.loads(receipt.to_json()))


@router.post("/identify", response_model=models.Decision, tags=["matching"],
             summary="Who is this? (1:N with the door's rules; the decision only)")
def identify(request: Request, principal: Verifies, image: Annotated[UploadFile, File()]) -> models.Decision:
    services = services_of(request)
    _, data = read_image_upload(image, services.config.console.max_image_mb)
    with services.stores():
        outcome = services.desk().identify(principal, data)
    return models.Decision(decision=outcome.decision, subject_id=outcome.subject_id, name=outcome.name)


@router.post("/verify", response_model=models.Decision, tags=["matching"],
             summary="Is this the person subject_id? (1:1; the decision only)")
def verify(request: Request, principal: Verifies, subject_id: Annotated[str, Form(max_length=100)],
           image: Annotated[UploadFile, File()]) -> models.Decision:
    from appliance.capture.images import decode_image

    services = services_of(request)
    label, data = read_image_upload(image, services.config.console.max_image_mb)
    with services.stores():
        pipeline = services.desk().pipeline
        _, template = pipeline.template(decode_image(data, label), services.config.quality_verification)
        if template is None:
            raise ApplianceError(ErrorCode.NO_FACE, f"{label}: no face that passes the verification profile")
        accepted = services.data.verify(principal, subject_id, template, pipeline.threshold)
    return models.Decision(decision=MATCH if accepted else NO_MATCH, subject_id=subject_id)
