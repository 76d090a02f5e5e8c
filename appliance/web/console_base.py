"""What every console page shares: the session behind the cookie, the CSRF check, the
navigation a role may see, security headers and rendering.

Why a double-submit token bound to the session: a form posted from another site cannot read
our cookie to copy it into the form, and the token is an HMAC of the session token under a
key only this process holds, so a token from another session (or a planted cookie) does not
pass either. SameSite=Strict on the cookies is the second wall, not the only one.

Pages never put personal data in a URL (searches and deletions are POSTed form fields) and
never run inline script: the Content-Security-Policy forbids it, so the few scripts live in
``static/``.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Callable

from fastapi import HTTPException, Request
from fastapi.responses import Response

from appliance.errors import ApplianceError, ErrorCode, PartlyDone
from appliance.ops.accounts import ACCOUNT_ADMIN_ROLES
from appliance.security.masking import mask_text
from appliance.security.roles import Permission, Principal
from appliance.web.auth import CONSOLE_DEVICE, SESSION_COOKIE, services_of
from appliance.web.console_i18n import N_, VALUE_LABELS, page_language, say, templates
from appliance.web.http_errors import UNAUTHENTICATED, status_of
from appliance.web.services import Services

CSRF_COOKIE = "appliance_csrf"
CSRF_FIELD = "csrf"
CSRF_BYTES = 32
SEE_OTHER = 303
LOGIN_PATH = "/login"
# no inline script or style, nothing from elsewhere, never framed, forms post only here
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # pages hold personal data (masked or not): never cached
}
_KEY_LOCK = threading.Lock()


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    permissions: tuple[Permission, ...]  # any one of them shows the item
    account_admin: bool = False  # account management is a role, not a permission


NAV = (  # labels are msgids of the console catalog, translated where shown
    NavItem(N_("People"), "/people", (Permission.READ_IDENTITY_MASKED,)),
    # a security administrator enrolls only to override a duplicate (with a reason)
    NavItem(N_("Enroll"), "/enroll", (Permission.ENROLL, Permission.OVERRIDE_DUPLICATE)),
    NavItem(N_("Doors"), "/doors", (Permission.MANAGE_DEVICES,)),
    NavItem(N_("Events"), "/events", (Permission.READ_EVENTS,)),
    # read like GET /api/access; changes need MANAGE_DEVICES (console_access); after Events, so
    # that a role's start page (its first item) stays what it was
    NavItem(N_("Access"), "/access", (Permission.READ_EVENTS,)),
    NavItem(N_("Audit"), "/audit", (Permission.READ_AUDIT, Permission.VERIFY_AUDIT)),
    NavItem(N_("Accounts"), "/accounts", (), account_admin=True),
)


def may_see(principal: Principal, item: NavItem) -> bool:
    if item.account_admin:
        return principal.role in ACCOUNT_ADMIN_ROLES and principal.scopes is None
    return any(principal.can(p) for p in item.permissions)


def navigation(principal: Principal) -> list[NavItem]:
    return [item for item in NAV if may_see(principal, item)]


# -- the session and its CSRF token -----------------------------------------------------
def _csrf_key(request: Request) -> bytes:
    """This process's CSRF key (a restart invalidates open forms, not sessions)."""
    state = request.app.state
    with _KEY_LOCK:
        if getattr(state, "console_csrf_key", None) is None:
            state.console_csrf_key = secrets.token_bytes(CSRF_BYTES)
        return state.console_csrf_key


def csrf_for_session(request: Request, session_token: str) -> str:
    return hmac.new(_csrf_key(request), session_token.encode("utf-8"), hashlib.sha256).hexdigest()


def session_principal(request: Request) -> Principal:
    """The principal of the session cookie, or a redirect to the login page (no cookie, or a
    session that ended: idle timeout, logout, disabled account)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        raise HTTPException(SEE_OTHER, "log in", headers={"Location": LOGIN_PATH})
    services = services_of(request)
    try:
        with services.stores():
            principal = services.accounts.authenticate(token, CONSOLE_DEVICE)
    except ApplianceError as exc:
        if exc.code not in UNAUTHENTICATED:
            raise  # a store that cannot be read: the problem page says so, the session is not ended
        raise HTTPException(SEE_OTHER, "log in again", headers={"Location": LOGIN_PATH + "?ended=1"}) from None
    if principal.scopes is not None:  # an API token in the cookie: the console wants a login
        raise HTTPException(SEE_OTHER, "log in", headers={"Location": LOGIN_PATH})
    request.state.principal = principal
    return principal


def page_principal(request: Request, item: NavItem | None = None) -> Principal:
    """The session's principal for a page, refused (a 403 page) when its role may not see it."""
    principal = session_principal(request)
    if item is not None and not may_see(principal, item):
        raise ApplianceError(ErrorCode.PERMISSION_DENIED, say(request, "%(role)s may not open %(page)s",
                                                              role=say(request, VALUE_LABELS[principal.role.value]),
                                                              page=say(request, item.label)))
    return principal


def post_principal(request: Request, submitted: str, item: NavItem | None = None) -> Principal:
    """The principal for a state-changing POST: the session, then the CSRF token submitted
    with the form, which must equal both the CSRF cookie and the session's own token."""
    principal = session_principal(request)
    expected = csrf_for_session(request, request.cookies.get(SESSION_COOKIE, ""))
    if not _same(submitted, request.cookies.get(CSRF_COOKIE, ""), expected):
        raise ApplianceError(ErrorCode.PERMISSION_DENIED, say(
            request, "the form is out of date or came from elsewhere; reload the page and try again"))
    return page_principal(request, item) if item is not None else principal


def console_page(handler: Callable[..., Response]) -> Callable[..., Response]:
    """A route that answers every refusal with a page, not JSON: the error's title and
    (masked) detail under the navigation of whoever is logged in."""
    @functools.wraps(handler)
    def page(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return handler(request, *args, **kwargs)
        except ApplianceError as exc:
            return refusal(request, problem_text(request, exc), status_of(exc.code))
        except HTTPException as exc:
            if exc.status_code == SEE_OTHER:  # to the login page
                raise
            return refusal(request, mask_text(str(exc.detail)), exc.status_code)

    return page


def refusal(request: Request, text: str, status_code: int) -> Response:
    """The problem page, under the navigation of whoever is logged in (if anyone)."""
    return render(request, "problem.html", getattr(request.state, "principal", None), status_code, problem=text)


# what the person at the console can do about an error that is not theirs, after its detail;
# ``PARTLY_DONE_ADVICE`` when the error says part of the work was done (``errors.PartlyDone``)
ADVICE = {
    ErrorCode.STORE_UNWRITABLE: N_("Nothing was saved: free disk space on the server (or ask its administrator to), "
                                   "then try again."),
}
PARTLY_DONE_ADVICE = {
    ErrorCode.STORE_UNWRITABLE: N_("Part of it was done, as said above: free disk space on the server (or ask its "
                                   "administrator to), then do it again to finish it."),
}


def problem_text(request: Request, exc: ApplianceError) -> str:
    """The error's title in the page's language and its (masked) detail: the console's own
    details are translated where raised (``say``); a library's detail stays as it was written.
    Then what to do, where the console knows (``ADVICE``)."""
    text = say(request, "%(title)s: %(detail)s", title=say(request, exc.code.title), detail=mask_text(exc.detail))
    advice = (PARTLY_DONE_ADVICE if isinstance(exc, PartlyDone) else ADVICE).get(exc.code)
    return say(request, "%(problem)s. %(advice)s", problem=text, advice=say(request, advice)) if advice else text


def _same(*values: str) -> bool:
    first = values[0]
    return bool(first) and all(hmac.compare_digest(first.encode(), v.encode()) for v in values[1:])


def login_csrf(request: Request) -> str:
    """The pre-session token of the login form (the cookie's value, or a new one)."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(CSRF_BYTES)


def login_csrf_ok(request: Request, submitted: str) -> bool:
    return _same(submitted, request.cookies.get(CSRF_COOKIE, ""))


def set_csrf_cookie(response: Response, value: str) -> None:
    response.set_cookie(CSRF_COOKIE, value, httponly=True, secure=True, samesite="strict", path="/")


# -- rendering --------------------------------------------------------------------------
def render(request: Request, template: str, principal: Principal | None, status_code: int = 200,
           **context: Any) -> Response:
    """A page with the navigation of ``principal``'s role, its CSRF token and the headers."""
    csrf = str(context.pop("csrf", ""))  # the login form's pre-session token
    if principal is not None:
        csrf = csrf_for_session(request, request.cookies.get(SESSION_COOKIE, ""))
    context.update(principal=principal, nav=navigation(principal) if principal else [], csrf=csrf,
                   csrf_field=CSRF_FIELD, path=request.url.path, return_to=_return_path(request))
    response = templates(page_language(request)).TemplateResponse(request, template, context,
                                                                   status_code=status_code, headers=SECURITY_HEADERS)
    if principal is not None:
        set_csrf_cookie(response, csrf)
    return response


def _return_path(request: Request) -> str:
    """Where the language switch comes back to: this page if a GET shows it again, else the
    page of the navigation it belongs to (a POSTed form's answer is not shown twice)."""
    if request.method == "GET":
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return next((item.path for item in NAV if request.url.path.startswith(item.path)), "/")


def services(request: Request) -> Services:
    return services_of(request)
