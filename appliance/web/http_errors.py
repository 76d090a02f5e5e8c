"""``ApplianceError`` codes as HTTP answers: one table, so every route refuses alike.

The body is ``{"error": {"code": 505, "name": "AUTH_REQUIRED", "title": ..., "detail": ...}}``
with the same stable code the command line prints (``E505``); the detail is masked, so a
refusal never carries personal data. 401 answers say how to authenticate (``WWW-Authenticate``),
a 503 that passes once the site recovers when to try again (``Retry-After``).
"""
from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.masking import mask_text

UNAUTHENTICATED = frozenset({ErrorCode.AUTH_REQUIRED, ErrorCode.TOKEN_INVALID, ErrorCode.SESSION_EXPIRED,
                             ErrorCode.LOGIN_FAILED, ErrorCode.ACCOUNT_LOCKED})
STATUS: dict[ErrorCode, int] = {
    **{code: 401 for code in UNAUTHENTICATED},
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.SUBJECT_NOT_FOUND: 404,
    ErrorCode.FILE_NOT_FOUND: 404,
    ErrorCode.DUPLICATE_ENROLLMENT: 409,
    ErrorCode.ACCOUNT_REFUSED: 409,
    ErrorCode.PKI_ERROR: 409,
    ErrorCode.SUBJECT_ALREADY_DELETED: 410,
    ErrorCode.TEMPLATE_SHREDDED: 410,
    ErrorCode.IMAGE_UNREADABLE: 415,
    ErrorCode.ENROLL_FAILED: 422,
    ErrorCode.NO_FACE: 422,
    ErrorCode.CONSENT_MISSING: 422,
    ErrorCode.PASSWORD_POLICY: 422,
    ErrorCode.CONFIG_INVALID: 422,
    ErrorCode.AUDIT_FORBIDDEN_DATA: 422,
    ErrorCode.AUDIT_TAMPERED: 409,
    ErrorCode.BROKER_UNAVAILABLE: 503,
    ErrorCode.PACK_NOT_FOUND: 503,
    ErrorCode.PACK_FILE_MISSING: 503,
    ErrorCode.DEPENDENCY_MISSING: 503,
    ErrorCode.STORE_UNREADABLE: 503,
    ErrorCode.STORE_CORRUPT: 503,
    ErrorCode.STORE_UNWRITABLE: 503,  # a full disk: the action is not done; try again once there is room
}
INTERNAL = 500
# 503s that pass once the site recovers, with when to try again (``Retry-After``, seconds): a client
# that honours it backs off instead of hammering a full disk or a restarting broker
RETRY_AFTER_S: dict[ErrorCode, int] = {
    ErrorCode.STORE_UNWRITABLE: 60,  # until an administrator makes room
    ErrorCode.BROKER_UNAVAILABLE: 5,  # a broker restart or a reconnection
}


def status_of(code: ErrorCode) -> int:
    return STATUS.get(code, INTERNAL)


def error_body(code: ErrorCode, detail: str) -> dict:
    return {"error": {"code": code.number, "name": code.name, "title": code.title, "detail": mask_text(detail)}}


def error_response(exc: ApplianceError, headers: dict[str, str] | None = None) -> JSONResponse:
    status = status_of(exc.code)
    extra = dict(headers or {})
    if status == 401:
        extra.setdefault("WWW-Authenticate", 'Bearer realm="appliance"')
    if exc.code in RETRY_AFTER_S:
        extra.setdefault("Retry-After", str(RETRY_AFTER_S[exc.code]))
    return JSONResponse(error_body(exc.code, exc.detail), status_code=status, headers=extra)


async def appliance_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApplianceError)
    return error_response(exc)
