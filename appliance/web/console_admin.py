"""The audit page (the masked log for an auditor, verification for every role that may
verify) and the accounts page (the security administrator's: accounts, and API tokens).

A new account's TOTP secret and a new token are shown once, on the page that created them,
and never again (only their ids are listed): the same rule as the command line and the API.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from appliance.errors import ApplianceError
from appliance.ops.tokens import MAX_LABEL_LEN, MAX_TOKEN_TTL_DAYS
from appliance.security.roles import SCOPES, Permission, Principal, Role
from appliance.web import api_admin
from appliance.web.console_base import (NAV, console_page, page_principal, post_principal, problem_text, render,
                                        services)
from appliance.web.http_errors import status_of

router = APIRouter()
AUDIT = next(item for item in NAV if item.path == "/audit")
ACCOUNTS = next(item for item in NAV if item.path == "/accounts")
AUDIT_SHOWN = 100  # the newest entries on the page; the CSV export has them all
DEFAULT_TOKEN_DAYS = 30.0


def _audit_page(request: Request, principal: Principal, **extra: object) -> Response:
    entries: list[dict] = []
    total = 0
    if principal.can(Permission.READ_AUDIT):
        store = services(request)
        with store.stores():
            exported = store.data.audit.export(principal)  # masked; the export is logged itself
        total = len(exported)
        entries = list(reversed(exported[-AUDIT_SHOWN:]))
    return render(request, "audit.html", principal, entries=entries, total=total,
                  may_read=principal.can(Permission.READ_AUDIT), may_verify=principal.can(Permission.VERIFY_AUDIT),
                  **extra)


@router.get("/audit", include_in_schema=False)
@console_page
def audit(request: Request) -> Response:
    return _audit_page(request, page_principal(request, AUDIT))


@router.post("/audit/verify", include_in_schema=False)
@console_page
def verify(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    principal = post_principal(request, csrf, AUDIT)
    return _audit_page(request, principal, verdict=api_admin.verify_audit(request=request, principal=principal))


# -- accounts and tokens ------------------------------------------------------------------
def _accounts_page(request: Request, principal: Principal, status_code: int = 200, **extra: object) -> Response:
    store = services(request)
    with store.stores():
        accounts = store.accounts.list(principal)
        tokens = store.accounts.tokens(principal)
    return render(request, "accounts.html", principal, status_code, accounts=accounts, tokens=tokens,
                  roles=[r.value for r in Role], scopes=list(SCOPES), max_days=MAX_TOKEN_TTL_DAYS,
                  default_days=DEFAULT_TOKEN_DAYS, max_label=MAX_LABEL_LEN, **extra)


@router.get("/accounts", include_in_schema=False)
@console_page
def accounts(request: Request) -> Response:
    return _accounts_page(request, page_principal(request, ACCOUNTS))


@router.post("/accounts", include_in_schema=False)
@console_page
def create_account(request: Request, name: Annotated[str, Form(max_length=64)],
                   role: Annotated[str, Form(max_length=64)], password: Annotated[str, Form(max_length=1024)],
                   csrf: Annotated[str, Form()] = "") -> Response:
    principal = post_principal(request, csrf, ACCOUNTS)
    store = services(request)
    try:
        with store.stores():
            new = store.accounts.create(principal, name.strip(), role, password)
    except ApplianceError as exc:  # the policy's reasons, shown beside the form
        return _accounts_page(request, principal, status_of(exc.code), problem=problem_text(request, exc))
    return _accounts_page(request, principal, new_account=new.account, totp_secret=new.totp_secret,
                          provisioning_uri=new.provisioning_uri())


@router.post("/tokens", include_in_schema=False)
@console_page
def create_token(request: Request, account: Annotated[str, Form(max_length=64)],
                 scopes: Annotated[list[str], Form()], ttl_days: Annotated[float, Form(gt=0)] = DEFAULT_TOKEN_DAYS,
                 label: Annotated[str, Form(max_length=MAX_LABEL_LEN)] = "",
                 csrf: Annotated[str, Form()] = "") -> Response:
    principal = post_principal(request, csrf, ACCOUNTS)
    store = services(request)
    try:
        with store.stores():
            new = store.accounts.create_token(principal, account, scopes, ttl_days, label.strip())
    except ApplianceError as exc:
        return _accounts_page(request, principal, status_of(exc.code), problem=problem_text(request, exc))
    return _accounts_page(request, principal, new_token=new, token_account=account)


@router.post("/tokens/revoke", include_in_schema=False)
@console_page
def revoke_token(request: Request, token_id: Annotated[str, Form(max_length=64)],
                 csrf: Annotated[str, Form()] = "") -> Response:
    principal = post_principal(request, csrf, ACCOUNTS)
    store = services(request)
    with store.stores():
        store.accounts.revoke_token(principal, token_id)
    return _accounts_page(request, principal, revoked_token=token_id)
