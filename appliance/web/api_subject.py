"""``GET /api/people/{subject_id}/export``: a person's request for their own data over HTTP.

The same call as ``appliance subject export`` (``matcher.subject_access.export_subject``):
the person's record, consents, enrollment dates and packs, door groups, the doors holding
their template, their door events within retention and their deletion receipts, masked
unless ``unmasked=true`` from a role allowed to read identities unmasked (that access is
audited; a refused one too), and the node-signed receipt that records who asked, when and
the digest of what was given. The export itself is in the audit log (``subject.export``).
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from appliance.matcher.subject_access import export_subject, site_doors
from appliance.security.roles import Permission as P
from appliance.security.roles import Principal
from appliance.web.auth import allowed, services_of

router = APIRouter(prefix="/api", tags=["people"])
ReadsPerson = Annotated[Principal, Depends(allowed(P.READ_IDENTITY_MASKED, P.READ_IDENTITY_UNMASKED))]
SUBJECT_ID_PATTERN = r"^[0-9A-Za-z_.:-]{1,64}$"


class AccessReceipt(BaseModel):
    """Signed by the node (``appliance/subject-access-receipt/v1|``); never holds the data."""

    receipt_id: str
    subject_id: str
    requested_by: str
    role: str
    exported_at: str
    node: str
    masked: bool
    digest: str
    counts: dict[str, int]
    signature: str


class SubjectExport(BaseModel):
    export: dict[str, Any]
    receipt: AccessReceipt


@router.get("/people/{subject_id}/export", response_model=SubjectExport,
            summary="Everything held about one person (access request), with a signed receipt")
def export_person(request: Request, principal: ReadsPerson,
                  subject_id: Annotated[str, Path(pattern=SUBJECT_ID_PATTERN)],
                  unmasked: bool = False) -> SubjectExport:
    services = services_of(request)
    with services.stores():
        result = export_subject(principal, subject_id, services.data, services.sync, site_doors(services.pki),
                                unmasked=unmasked)
    return SubjectExport(**result.as_dict())
