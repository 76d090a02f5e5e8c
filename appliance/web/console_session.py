"""Logging in and out of the console, and the start page.

Every refused login shows ``accounts.LOGIN_REFUSED``, whatever the reason (unknown account,
wrong password or code, locked, disabled): the page must not tell a guesser which part was
right; the audit log has the true reason.
"""
from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from appliance.errors import ApplianceError
from appliance.ops.accounts import LOCKOUT_S
from appliance.web.auth import CONSOLE_DEVICE, SESSION_COOKIE, clear_session_cookie, set_session_cookie
from appliance.web.console_base import (CSRF_COOKIE, LOGIN_PATH, SECURITY_HEADERS, SEE_OTHER, console_page,
                                        csrf_for_session, login_csrf, login_csrf_ok, navigation, page_principal,
                                        post_principal, render, services, set_csrf_cookie)
from appliance.web.console_i18n import N_, say

router = APIRouter()
ENDED_TEXT = N_("Your session ended (logged out or idle too long). Log in again.")
STALE_FORM_TEXT = N_("The login form was out of date. Please try again.")
# accounts.LOGIN_REFUSED, in the page's language
LOGIN_REFUSED_TEXT = N_("wrong account, password or code (repeated failures lock an account for %(minutes)s minutes)")
SECONDS_PER_MINUTE = 60


@router.get("/login", include_in_schema=False)
def login_page(request: Request, ended: str = "") -> Response:
    token = login_csrf(request)
    response = render(request, "login.html", None, csrf=token, notice=say(request, ENDED_TEXT) if ended else "")
    set_csrf_cookie(response, token)
    return response


@router.post("/login", include_in_schema=False)
@console_page
def login(request: Request, account: str = Form(""), password: str = Form(""), code: str = Form(""),
          csrf: str = Form("")) -> Response:
    if not login_csrf_ok(request, csrf):
        return _login_refused(request, say(request, STALE_FORM_TEXT))
    store = services(request)
    try:
        with store.stores():
            session = store.accounts.login(account.strip(), password, code.strip(), CONSOLE_DEVICE)
    except ApplianceError:
        return _login_refused(request, say(request, LOGIN_REFUSED_TEXT, minutes=LOCKOUT_S // SECONDS_PER_MINUTE))
    response = RedirectResponse("/", status_code=SEE_OTHER, headers=SECURITY_HEADERS)
    set_session_cookie(response, session.token)
    set_csrf_cookie(response, csrf_for_session(request, session.token))
    return response


def _login_refused(request: Request, text: str) -> Response:
    token = login_csrf(request)
    response = render(request, "login.html", None, status_code=401, csrf=token, refused=text)
    set_csrf_cookie(response, token)
    return response


@router.post("/logout", include_in_schema=False)
@console_page
def logout(request: Request, csrf: str = Form("")) -> Response:
    post_principal(request, csrf)
    store = services(request)
    with store.stores():
        store.accounts.logout(request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse(LOGIN_PATH, status_code=SEE_OTHER, headers=SECURITY_HEADERS)
    clear_session_cookie(response)
    response.delete_cookie(CSRF_COOKIE, path="/", httponly=True, secure=True, samesite="strict")
    return response


@router.get("/", include_in_schema=False)
@console_page
def start(request: Request) -> Response:
    """The first page the role may open (a role with none sees a page saying so)."""
    principal = page_principal(request)
    pages = navigation(principal)
    if pages:
        return RedirectResponse(pages[0].path, status_code=SEE_OTHER, headers=SECURITY_HEADERS)
    return render(request, "problem.html", principal, problem=say(request, "This account's role has no console pages."))
