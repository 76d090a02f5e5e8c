"""Masking of personal data: the one module every output path (CLI, logs, MQTT, reports) uses.

Rules: a Chinese name keeps its first character (张三 -> 张*); a Latin name keeps the first
letter of each word (Zhang San -> Z*** S**); ID, staff, card and phone numbers keep the first
3 and last 4 characters (shorter ones keep only the last 2). Unmasked values are returned only
through :func:`reveal`, which checks the principal's permission and writes an audit entry.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Mapping, Protocol

from appliance.security.roles import Permission, Principal, require

MASK = "*"
KEEP_HEAD = 3
KEEP_TAIL = 4
SHORT_KEEP_TAIL = 2
# below this length "first 3 + last 4" would reveal (nearly) everything
MIN_LEN_FOR_HEAD_TAIL = KEEP_HEAD + KEEP_TAIL + 2

NAME_FIELDS = frozenset({"name", "guardian_name", "consented_by", "full_name"})
NUMBER_FIELDS = frozenset({"id_number", "staff_no", "card_no", "phone", "guardian_phone"})

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# mainland ID card numbers (18 chars, last may be X), phone numbers (optionally +86), long
# card/staff numbers: digit runs of 7 or more, possibly with spaces or dashes inside
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])\+?\d[\d \-]{5,}[\dXx](?![\w.])")


def mask_name(name: str) -> str:
    name = name.strip()
    if not name:
        return name
    if _CJK.match(name):
        return name[0] + MASK * (len(name) - 1)
    return " ".join(word[0] + MASK * (len(word) - 1) for word in name.split())


def mask_number(value: str) -> str:
    """Keep the first 3 and last 4 digits/characters; separators stay where they are."""
    positions = [i for i, ch in enumerate(value) if ch.isalnum()]
    if len(positions) >= MIN_LEN_FOR_HEAD_TAIL:
        keep = set(positions[:KEEP_HEAD] + positions[-KEEP_TAIL:])
    else:
        keep = set(positions[-SHORT_KEEP_TAIL:]) if len(positions) > SHORT_KEEP_TAIL else set()
    return "".join(ch if (i in keep or not ch.isalnum()) else MASK for i, ch in enumerate(value))


mask_id_number = mask_number
mask_phone = mask_number


def mask_text(text: str) -> str:
    """Mask number-like personal data inside free text (log lines, error details)."""
    return _NUMBER_IN_TEXT.sub(lambda m: mask_number(m.group(0)), text)


def mask_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a record with every known personal field masked."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, str) and key in NAME_FIELDS:
            out[key] = mask_name(value)
        elif isinstance(value, str) and key in NUMBER_FIELDS:
            out[key] = mask_number(value)
        elif isinstance(value, str):
            out[key] = mask_text(value)
        else:
            out[key] = value
    return out


class AuditTrail(Protocol):
    """Where :func:`reveal` records each access: ``appliance.stores.audit.AuditLog`` (masking
    sits below the stores and does not import them)."""

    def append(self, principal: Principal, action: str, obj: str, result: str, detail: str = "") -> Any: ...


def reveal(record: Mapping[str, Any], principal: Principal, audit: AuditTrail, subject: str) -> dict[str, Any]:
    """The unmasked record, for a role allowed to see it; the access itself is audited."""
    try:
        require(principal, Permission.READ_IDENTITY_UNMASKED)
    except Exception:
        audit.append(principal, "identity.reveal", subject, "denied")
        raise
    audit.append(principal, "identity.reveal", subject, "ok")
    return dict(record)


class MaskingFilter(logging.Filter):
    """Logging filter that masks number-like personal data in every record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - bad arguments: logged masked, not dumped raw by handleError
            record.msg, record.args = mask_text(f"unformattable log call: {record.msg!r} % {record.args!r}"), None
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_log_masking(logger: logging.Logger | None = None) -> None:
    """Add the masking filter to every handler of ``logger`` (root by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
