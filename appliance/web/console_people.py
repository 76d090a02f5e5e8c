"""The people page: search (POSTed, so a name never sits in a URL), paging, masked rows with
their door groups and where each face works (``EnrollmentDesk.people_page``: central, door
caches or nowhere with the reason), and deletion with the signed receipt shown.

Deletion is ``ProtectedData.delete_subject`` for a role that may delete, and
``withdraw_consent`` (which deletes too) for an operator recording a withdrawal: the same
calls, permission checks and audit entries as the command line and the API.
"""
from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from appliance.security.roles import Permission, Principal
from appliance.stores.deletion import DeletionReceipt
from appliance.stores.protected import MAX_QUERY_CHARS, PAGE_SIZE
from appliance.web import api_people, models
from appliance.web.console_base import NAV, console_page, page_principal, post_principal, render, services

router = APIRouter()
PEOPLE = next(item for item in NAV if item.path == "/people")
DELETE_REASON = "request"
WITHDRAWN = "consent withdrawn"


def _page(request: Request, principal: Principal, query: str, offset: int, **extra: object) -> Response:
    store = services(request)
    query = query.strip()[:MAX_QUERY_CHARS]
    with store.stores():
        rows, total = store.desk().people_page(principal, query, max(0, offset), PAGE_SIZE)
    offset = max(0, offset)
    return render(request, "people.html", principal, people=rows, total=total, query=query, offset=offset,
                  page_size=PAGE_SIZE, previous=max(0, offset - PAGE_SIZE) if offset else None,
                  following=offset + PAGE_SIZE if offset + PAGE_SIZE < total else None,
                  may_delete=principal.can(Permission.DELETE_SUBJECT),
                  may_reveal=principal.can(Permission.READ_IDENTITY_UNMASKED),
                  may_set_groups=principal.can(Permission.ENROLL),
                  may_withdraw=principal.can(Permission.WITHDRAW_CONSENT), **extra)


@router.get("/people", include_in_schema=False)
@console_page
def people(request: Request) -> Response:
    return _page(request, page_principal(request, PEOPLE), "", 0)


@router.post("/people", include_in_schema=False)
@console_page
def search(request: Request, query: str = Form("", max_length=MAX_QUERY_CHARS), offset: int = Form(0, ge=0),
           csrf: str = Form("")) -> Response:
    return _page(request, post_principal(request, csrf, PEOPLE), query, offset)


@router.post("/people/delete", include_in_schema=False)
@console_page
def delete(request: Request, subject_id: str = Form(..., max_length=100), csrf: str = Form("")) -> Response:
    """Delete (security administrator) or record a withdrawal of consent (operator); either
    way the person is erased everywhere and the signed receipt is shown."""
    principal = post_principal(request, csrf, PEOPLE)
    store = services(request)
    with store.stores():
        if principal.can(Permission.DELETE_SUBJECT):
            receipt = store.data.delete_subject(principal, subject_id, DELETE_REASON)
        else:  # PERMISSION_DENIED unless the role may record a withdrawal
            receipt = store.data.withdraw_consent(principal, subject_id)
        valid = receipt.verify(store.data.node.signing.public_key())
    return _page(request, principal, "", 0, receipt=_receipt_view(receipt), receipt_valid=valid)


@router.post("/people/reveal", include_in_schema=False)
@console_page
def reveal(request: Request, subject_id: str = Form(..., max_length=100), csrf: str = Form("")) -> Response:
    """One person unmasked, for a role allowed to see it (the access is in the audit log)."""
    principal = post_principal(request, csrf, PEOPLE)
    store = services(request)
    with store.stores():
        record = store.data.reveal(principal, subject_id)
    return _page(request, principal, "", 0, revealed=record)


@router.post("/people/groups", include_in_schema=False)
@console_page
def set_groups(request: Request, subject_id: str = Form(..., max_length=100),
               groups: str = Form("", max_length=2000), csrf: str = Form("")) -> Response:
    """The person's door groups (none: every door), through the API's own route."""
    principal = post_principal(request, csrf, PEOPLE)
    chosen = models.Groups(groups=groups.replace(",", " ").split())
    api_people.set_groups(request=request, principal=principal, subject_id=subject_id, groups=chosen)
    return _page(request, principal, "", 0)


def _receipt_view(receipt: DeletionReceipt) -> dict:
    return {"receipt_id": receipt.receipt_id, "subject_id": receipt.subject_id, "reason": receipt.reason,
            "deleted_at": receipt.deleted_at, "node": receipt.node, "actor": receipt.actor,
            "erased": receipt.items, "tombstone_revision": receipt.tombstone_revision,
            "signature": receipt.signature, "json": receipt.to_json()}
