"""``/api/session``, ``/api/accounts``, ``/api/tokens``: logging in, and account management.

``POST /api/session`` logs in with account, password and TOTP code (``Accounts.login``: the
same lockout and the same single "login failed" answer as the command line) and returns the
session token; a browser also gets it as the session cookie. Accounts are the security
administrator's, from a session (never a token). A token is returned once, when created;
listings show ids only.
"""
from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request, Response

from appliance.ops.accounts import Account
from appliance.web import models
from appliance.web.auth import (
    CONSOLE_DEVICE, SESSION_COOKIE, Authenticated, SessionPrincipal, clear_session_cookie, credentials, services_of,
    set_session_cookie,
)

router = APIRouter(prefix="/api", tags=["accounts"])
CREATED = 201


def _account(account: Account) -> models.Account:
    return models.Account(name=account.name, role=account.role.value, disabled=account.disabled,
                          locked=account.locked_until > time.time())


@router.post("/session", response_model=models.SessionOut, summary="Log in (password and TOTP code)")
def login(request: Request, response: Response, body: models.Login) -> models.SessionOut:
    services = services_of(request)
    device = CONSOLE_DEVICE if SESSION_COOKIE in request.cookies else "api"
    with services.stores():
        session = services.accounts.login(body.account, body.password, body.totp, device=device)
    set_session_cookie(response, session.token)
    return models.SessionOut(token=session.token, account=session.principal.actor,
                             role=session.principal.role.value, expires_idle_s=session.expires_idle_s)


@router.delete("/session", response_model=models.Done, summary="Log out (the session of this request)")
def logout(request: Request, principal: Authenticated, response: Response) -> models.Done:
    services = services_of(request)
    secret, _ = credentials(request)
    if principal.scopes is None:  # a session; an API token is revoked with DELETE /api/tokens/{id}
        with services.stores():
            services.accounts.logout(secret)
    clear_session_cookie(response)
    return models.Done()


@router.get("/accounts", response_model=list[models.Account], summary="Accounts (security administrator)")
def list_accounts(request: Request, principal: SessionPrincipal) -> list[models.Account]:
    services = services_of(request)
    with services.stores():
        return [_account(a) for a in services.accounts.list(principal)]


@router.post("/accounts", response_model=models.NewAccount, status_code=CREATED,
             summary="Create an account (security administrator); its TOTP secret, once")
def create_account(request: Request, principal: SessionPrincipal, body: models.NewAccountIn) -> models.NewAccount:
    services = services_of(request)
    with services.stores():
        new = services.accounts.create(principal, body.name, body.role, body.password)
    return models.NewAccount(account=_account(new.account), totp_secret=new.totp_secret,
                             provisioning_uri=new.provisioning_uri())


@router.post("/accounts/{name}/{change}", response_model=models.Account,
             summary="Disable, enable or unlock an account (security administrator)")
def change_account(request: Request, principal: SessionPrincipal, name: str,
                   change: Literal["disable", "enable", "unlock"]) -> models.Account:
    services = services_of(request)
    with services.stores():
        if change == "unlock":
            services.accounts.unlock(principal, name)
        else:
            services.accounts.set_disabled(principal, name, change == "disable")
        return _account(services.accounts.get(name))


@router.get("/tokens", response_model=list[models.Token], summary="API tokens (all: security administrator)")
def list_tokens(request: Request, principal: Authenticated) -> list[models.Token]:
    services = services_of(request)
    with services.stores():
        found = services.accounts.tokens(principal)
    return [models.Token(token_id=t.token_id, account=t.account, scopes=list(t.scopes), label=t.label,
                         created=t.created, created_by=t.created_by, expires_at=t.expires_at, revoked=t.revoked,
                         last_used=t.last_used) for t in found]


@router.post("/tokens", response_model=models.NewToken, status_code=CREATED,
             summary="Create an API token (shown once)")
def create_token(request: Request, principal: SessionPrincipal, body: models.NewTokenIn) -> models.NewToken:
    services = services_of(request)
    with services.stores():
        new = services.accounts.create_token(principal, body.account, body.scopes, body.ttl_days, body.label)
    return models.NewToken(token=new.token, token_id=new.token_id, expires_at=new.expires_at)


@router.delete("/tokens/{token_id}", response_model=models.Done, summary="Revoke an API token")
def revoke_token(request: Request, principal: Authenticated, token_id: str) -> models.Done:
    services = services_of(request)
    with services.stores():
        services.accounts.revoke_token(principal, token_id)
    return models.Done()
