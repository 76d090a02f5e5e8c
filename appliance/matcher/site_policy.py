"""The site's matching-mode decision: may templates leave the doors for a central search?

The 2025 face-recognition measures keep face information in the device and forbid sending it
out over a network unless a law provides otherwise or the person gave separate consent
(``docs/security.md``, "Matching mode"). Central matching (and the central fallback of
``local-first``) sends each probe template to the matcher, so it is allowed only while the
site holds a recorded justification: who decided (a security administrator's account), when,
why (bounded free text) and, optionally, the legal basis or the separate-consent reference.
Without one the doors decide from their own cache and no template leaves them.

The decision lives in the sync store's ``site_state`` (every replica reads the same row); each
sync answer carries it to the doors (``Delta.central``), and recording or revoking it moves
the store revision by one so every connected door is told to ask at once. Both are audited.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.sync_store import SyncStore, open_sync_store
from appliance.security.roles import Permission, Principal, Role, require
from appliance.stores.audit_chain import FORBIDDEN
from appliance.stores.protected import ProtectedData

DECISION_KEY = "matching_mode"  # the site_state row of the decision
CENTRAL = "central"
MIN_REASON_CHARS = 20  # a justification is a sentence, not "ok"
MAX_REASON_CHARS = 2000  # bounded: it is stored, audited and printed in the compliance report
MAX_BASIS_CHARS = 300  # a law's article or a consent-form reference


@dataclass(frozen=True)
class MatchingDecision:
    """Why this site may match centrally: who recorded it, when, why, on what basis."""

    mode: str  # CENTRAL (the only mode that needs a justification)
    account: str  # the security administrator's account id
    role: str
    decided_at: float  # Unix seconds
    reason: str
    legal_basis: str = ""  # law / regulation article, or the separate-consent form reference

    def as_dict(self) -> dict[str, str | float]:
        return asdict(self)


def open_site_store(data: ProtectedData) -> SyncStore:
    """The sync store beside ``data``'s stores, opened with the same key provider (the
    caller closes it)."""
    return open_sync_store(data, data.keys)


def matching_decision(store: SyncStore) -> MatchingDecision | None:
    """The recorded justification for central matching, or None (the site runs local)."""
    found = store.site_value(DECISION_KEY)
    if found is None:
        return None
    value, _ = found
    return MatchingDecision(str(value["mode"]), str(value["account"]), str(value["role"]),
                            float(value["decided_at"]), str(value["reason"]), str(value.get("legal_basis", "")))


def central_allowed(store: SyncStore) -> bool:
    """May a door send a template to the matcher? Only with a justification on record."""
    decision = matching_decision(store)
    return decision is not None and decision.mode == CENTRAL


def _require_security_admin(principal: Principal) -> None:
    require(principal, Permission.MANAGE_DEVICES)
    if principal.role is not Role.SECURITY_ADMIN:
        raise ApplianceError(ErrorCode.PERMISSION_DENIED,
                             f"{principal.actor} ({principal.role.value}) may not decide the matching mode: "
                             "a security administrator records it")


def _bounded(text: str, what: str, low: int, high: int) -> str:
    """One line of ``low`` to ``high`` characters that the operation log will take."""
    text = " ".join(text.split())
    if not low <= len(text) <= high:
        raise ApplianceError(ErrorCode.CONFIG_INVALID,
                             f"{what}: {len(text)} characters; give {low} to {high} characters")
    refused = FORBIDDEN.search(text)
    if refused:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"{what}: the operation log refuses {refused.group(0)!r} "
                                                       "(no scores, thresholds, images or vectors): rephrase")
    return text


def justify(data: ProtectedData, store: SyncStore, principal: Principal, reason: str, legal_basis: str = "",
            now: float | None = None) -> MatchingDecision:
    """Record (or replace) the justification for central matching and tell the doors."""
    _require_security_admin(principal)
    decision = MatchingDecision(CENTRAL, principal.actor, principal.role.value,
                                time.time() if now is None else now,
                                _bounded(reason, "reason", MIN_REASON_CHARS, MAX_REASON_CHARS),
                                _bounded(legal_basis, "legal basis", 0, MAX_BASIS_CHARS))
    store.put_site_value(DECISION_KEY, decision.as_dict(), decision.decided_at)
    data.audit.append(principal, "site.matching.justify", CENTRAL, "ok",
                      f"reason: {decision.reason}" + (f"; basis: {decision.legal_basis}" if legal_basis else ""))
    _tell_doors(data)
    return decision


def revoke(data: ProtectedData, store: SyncStore, principal: Principal) -> MatchingDecision | None:
    """Withdraw the justification: doors go back to deciding locally. Returns what it was."""
    _require_security_admin(principal)
    before = matching_decision(store)
    store.delete_site_value(DECISION_KEY)
    data.audit.append(principal, "site.matching.revoke", CENTRAL, "ok" if before else "none",
                      "" if before is None else f"recorded by {before.account} at {before.decided_at:.0f}")
    _tell_doors(data)
    return before


def _tell_doors(data: ProtectedData) -> None:
    """One empty revision: the replicas announce the new head, each door asks for the
    changes, and the answer carries the decision."""
    data.biometric.advance_revision(data.biometric.revision + 1)
