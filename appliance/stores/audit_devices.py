"""Door decisions in the audit chain: the entry a device's decision becomes at the centre.

A door decides on its own when it matches a face or a card from its cache
(``local_decision`` and ``credential_decision`` events) or refuses without matching (a
``pass`` event ``decided_by: door``: liveness failed, or no decision could be had). Those
decisions were kept only as events; here each becomes one entry of the tamper-evident log when
it reaches the centre. The entry keeps the decision's own time
(``origin_at``, apart from the entry's time of writing) and the event exactly as the device
signed it (``evidence``: canonical JSON of the document and the device's Ed25519 signature,
``security.device_reports``), so the chain proves what the device said and when - the hash
covers both. A decision the matcher took is already in the log (``decision.*``), and the pass
event of a cache decision repeats its ``local_decision`` (or ``credential_decision``): neither
is entered twice.

Entries never hold scores or biometric data: evidence whose details look like either is
left out (the entry says so) rather than written.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.security import device_reports, signing
from appliance.security.roles import Principal, Role
from appliance.stores.audit_chain import AuditEntry, entry_fields, forbidden

LOCAL_DECISION = "local_decision"  # the cache's decision on a face (edge.cache_decider)
CREDENTIAL_DECISION = "credential_decision"  # the cache's decision on a card or PIN (edge.door_modes)
PASS = "pass"  # the door's pass record (edge.door_pass); audited when the door itself refused
DOOR = "door"  # a pass's ``decided_by`` when no matcher and no cache decided it
ACTION_PREFIX = "door."  # an entry's action: door.local_decision, door.credential_decision, door.pass
CACHE_DECISIONS = (LOCAL_DECISION, CREDENTIAL_DECISION)
NOBODY = "-"
UNSIGNED, INVALID, REFUSED = "device signature missing", "device signature invalid", "evidence refused"
PSEUDONYM = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")  # a subject id as the protocol allows it; else nobody
MAX_DECIMALS = 2  # a number with more decimals in a door event's details may be a score


def is_door_decision(kind: str, details: dict[str, Any]) -> bool:
    """Whether an event (not an alarm) of ``kind`` is a decision the door took itself."""
    return kind in CACHE_DECISIONS or (kind == PASS and details.get("decided_by") == DOOR)


def door_pass(kind: str, details: dict[str, Any]) -> tuple[str, str] | None:
    """(subject, pass id) of a pass a door's cache granted (a face or a card let in while the door
    decided alone), from its event's ``kind`` and ``details``; None for anything else."""
    subject, pass_id = details.get("subject"), details.get("request_id", "")
    if kind not in CACHE_DECISIONS or details.get("accepted") is not True:
        return None
    if not (isinstance(subject, str) and PSEUDONYM.match(subject) and isinstance(pass_id, str)):
        return None
    return subject, pass_id


def outcome_of(details: dict[str, Any]) -> str:
    outcome = details.get("outcome")
    if isinstance(outcome, str):
        return outcome
    accepted = details.get("accepted")
    return ("accepted" if accepted else "rejected") if isinstance(accepted, bool) else ""


def decision_record(recorder: str, document: dict[str, Any], signature: str, verified: bool) -> dict:
    """The fields of the entry for a device's decision ``document`` (``Report.document()``),
    written by matcher replica ``recorder``; ``verified``: the signature was checked with the
    device's key. Time is added when the entry is queued (``AuditLog.append_records``)."""
    device, details = str(document.get("device_id", "")), document.get("details") or {}
    subject = details.get("subject")
    subject = subject if isinstance(subject, str) and PSEUDONYM.match(subject) else NOBODY
    why = "" if verified else (INVALID if signature else UNSIGNED)
    clean = _clean(details)
    evidence = {"event": document, "signature": signature if verified else ""} if clean else None
    detail = "; ".join(x for x in (str(details.get("reason", "")), str(details.get("mode", "")), why,
                                   "" if clean else REFUSED) if x)
    principal = Principal(recorder, Role.OPERATOR, device=device)
    fields = entry_fields(principal, ACTION_PREFIX + str(document.get("kind", "")),
                          subject,
                          outcome_of(details) or "-", "" if forbidden(detail) else detail)
    return {**fields, "origin_at": float(document.get("at", 0.0)),
            "evidence": "" if evidence is None else signing.canonical_json(evidence, ascii_only=False).decode()}


def _clean(details: dict[str, Any]) -> bool:
    """No key or text that names a score or biometric data, no number precise like a score."""
    for key, value in details.items():
        if forbidden(str(key)) or (isinstance(value, str) and forbidden(value)):
            return False
        if isinstance(value, float) and round(value, MAX_DECIMALS) != value:
            return False
        if isinstance(value, (dict, list)):
            return False  # door decisions carry flat details; anything nested is not theirs
    return True


def evidence_problem(entry: AuditEntry, key_of: Callable[[str], Ed25519PublicKey | None]) -> str:
    """Why a door-decision entry's evidence does not prove itself ("" when it does): the
    signed event must be the device's (its key from ``key_of``), about this entry's device,
    time and subject. The chain's hash already covers the evidence; this checks who signed it."""
    try:
        evidence = json.loads(entry.evidence)
        document, signature = evidence["event"], evidence["signature"]
    except (ValueError, TypeError, KeyError):
        return "evidence unreadable"
    if not signature:
        return UNSIGNED  # entered without one: the door sent none, or it did not verify on arrival
    key = key_of(entry.device)
    if key is None:
        return f"device {entry.device} unknown"
    if not device_reports.verify(key, document, signature):
        return "device signature invalid"
    details = document.get("details") or {}
    if (document.get("device_id") != entry.device or document.get("at") != entry.origin_at
            or (details.get("subject") or NOBODY) != entry.object):
        return "evidence does not match the entry"
    return ""


def signature_problems(entries: list[AuditEntry],
                       key_of: Callable[[str], Ed25519PublicKey | None]) -> tuple[list[tuple[int, str]], int]:
    """(seq and why, for each door decision whose kept device signature does not prove it;
    how many do). Entries kept without a signature (the door sent none) and entries of doors
    whose key is no longer known are neither: they prove nothing and claim nothing."""
    problems, proven = [], 0
    for entry in device_decisions(entries):
        try:
            claimed = bool(json.loads(entry.evidence)["signature"]) if entry.evidence else False
        except (ValueError, TypeError, KeyError):
            claimed = True  # unreadable evidence is a problem, below
        if not claimed or key_of(entry.device) is None:
            continue
        why = evidence_problem(entry, key_of)
        if why:
            problems.append((entry.seq, why))
        else:
            proven += 1
    return problems, proven


def device_decisions(entries: list[AuditEntry]) -> list[AuditEntry]:
    """The entries that are door decisions (for counts in reports and for checking)."""
    return [e for e in entries if e.action.startswith(ACTION_PREFIX) and e.origin_at]


@dataclass(frozen=True)
class DoorDecisionSummary:
    """What the chain holds of the doors' own decisions (the compliance report's evidence)."""

    count: int
    signed: int  # with the device's verified signature kept as evidence
    devices: tuple[str, ...]
    newest_origin_at: float | None  # when the latest of them was decided at its door

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "signed": self.signed, "devices": list(self.devices),
                "newest_origin_at": self.newest_origin_at}


def summary(entries: list[AuditEntry]) -> DoorDecisionSummary:
    """Count the door decisions among ``entries`` (``AuditLog.entries()``)."""
    found = device_decisions(entries)
    signed = sum(1 for e in found if e.evidence and json.loads(e.evidence).get("signature"))
    return DoorDecisionSummary(len(found), signed, tuple(sorted({e.device for e in found})),
                               max((e.origin_at for e in found), default=None))
