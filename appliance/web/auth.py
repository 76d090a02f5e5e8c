"""Who is asking, and may they: the dependencies every API route declares.

Credentials come as ``Authorization: Bearer <token>`` (an API token ``apt_...`` or a session
token from ``POST /api/session``) or as the console's session cookie (``SESSION_COOKIE``:
HttpOnly, Secure, SameSite=Strict, set by the console's login and by ``POST /api/session``);
a change (POST, PUT, DELETE) made with the cookie also needs ``CSRF_HEADER``.
``Accounts.authenticate`` decides (expired, revoked, unknown: 401); each route then names the
permissions it needs (``allowed``): a principal with none of them gets 403, audited with the
route (a template path: no personal data). Every refusal is also counted by the metrics
middleware from its status code.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Response

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.roles import Permission, Principal, require_any
from appliance.web.services import Services

SESSION_COOKIE = "appliance_session"  # the console's session cookie (shared with appliance.web.console)
API_DEVICE = "api"  # the device a Bearer request acts from, in audit entries
CONSOLE_DEVICE = "console"  # ... and a cookie request
BEARER = "bearer"
# a change made with the cookie must carry this header: a cross-site form cannot set it, and a
# cross-site script cannot either without a CORS preflight this server never grants
CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def services_of(request: Request) -> Services:
    return request.app.state.services


def credentials(request: Request) -> tuple[str, str]:
    """(secret, device): the Bearer token, else the session cookie, else ("", api)."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != BEARER or not value.strip():
            raise ApplianceError(ErrorCode.TOKEN_INVALID, "use 'Authorization: Bearer <token>'")
        return value.strip(), API_DEVICE
    if SESSION_COOKIE not in request.cookies:
        return "", API_DEVICE
    if request.method not in SAFE_METHODS and CSRF_HEADER.lower() not in request.headers:
        raise ApplianceError(ErrorCode.PERMISSION_DENIED, f"a change made with the session cookie needs the "
                                                          f"{CSRF_HEADER} header (or send a Bearer token)")
    return request.cookies[SESSION_COOKIE], CONSOLE_DEVICE


def authenticated(request: Request) -> Principal:
    """The principal of the request's credentials (401 without valid ones); it also takes a
    token from the account's rate-limit bucket."""
    services = services_of(request)
    secret, device = credentials(request)
    with services.stores():
        principal = services.accounts.authenticate(secret, device)
    request.app.state.limiter.check(f"account:{principal.actor}")
    request.state.principal = principal
    return principal


def allowed(*permissions: Permission) -> Callable[..., Principal]:
    """A dependency: the authenticated principal if its role (and token scopes) grant at least
    one of ``permissions``; else 403, with the refusal in the audit log."""
    def dependency(request: Request, principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        try:
            require_any(principal, *permissions)
        except ApplianceError:
            services = services_of(request)
            with services.stores():
                services.data.audit.append(principal, "api.denied", route_of(request), "denied",
                                           ", ".join(p.name for p in permissions))
            raise
        return principal

    return dependency


def session_only(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """Account management needs an interactive session (password and TOTP), never a token."""
    if principal.scopes is not None:
        raise ApplianceError(ErrorCode.PERMISSION_DENIED, "account management needs a session, not an API token")
    return principal


Authenticated = Annotated[Principal, Depends(authenticated)]
SessionPrincipal = Annotated[Principal, Depends(session_only)]


def route_of(request: Request) -> str:
    """The matched route's template (``/api/people/{subject_id}``), else the bare path."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or request.url.path


def set_session_cookie(response: Response, token: str) -> None:
    """The console's session cookie: never readable by scripts, never sent over plain HTTP
    or from another site; a browser-session cookie (the server ends the session when idle)."""
    response.set_cookie(SESSION_COOKIE, token, httponly=True, secure=True, samesite="strict", path="/")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=True, samesite="strict")
