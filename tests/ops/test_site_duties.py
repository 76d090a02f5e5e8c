"""The site's data duties on real stores in tmp_path: the matching-mode decision, retention of
every kind of record (applied, audited, remembered) and the filing counter."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pytest

from appliance.config import MIN_AUDIT_RETENTION_DAYS, SecurityConfig, load_config
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.site_policy import (
    MAX_REASON_CHARS, central_allowed, justify, matching_decision, open_site_store, revoke,
)
from appliance.matcher.sync_store import EventRecord
from appliance.ops import health
from appliance.ops.filing import FILE, OK, WARN, filing_status, raise_filing_alarm
from appliance.ops.retention import apply_retention, retention_status
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.roles import Principal, Role
from appliance.stores.audit import SECONDS_PER_DAY
from appliance.stores.deletion import DeletionReceipt, load_receipt
from appliance.stores.protected import RECEIPTS_DIR, ProtectedData
from appliance.vision.templates import Template, normalise

PACK = ("w600k-mbf", "1.0")
SECURITY = Principal("acct-security", Role.SECURITY_ADMIN)
SYSTEM = Principal("acct-system", Role.SYSTEM_ADMIN)
OPERATOR = Principal("acct-operator", Role.OPERATOR)
REASON = "one matcher serves 40 doors of a secured campus; notice art. 5, DPO approval 2026-11"


@pytest.fixture
def site(tmp_path, keys):
    with ProtectedData(tmp_path / "data", keys) as data:
        store = open_site_store(data)
        try:
            yield data, store
        finally:
            store.close()


def enroll(data: ProtectedData, seed: int) -> str:
    subject = new_subject_id()
    data.register_person(OPERATOR, Person(subject, f"Person {seed}", AgeBand.ADULT, Alternative.CARD))
    data.record_consent(OPERATOR, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), f"Person {seed}"))
    vector = normalise(np.random.default_rng(seed).normal(size=512))
    data.enroll(OPERATOR, subject, Template(vector, *PACK), np.zeros(1, np.float32))
    return subject


def actions(data: ProtectedData) -> list[str]:
    return [entry.action for entry in data.audit.entries()]


# -- the matching-mode decision -------------------------------------------------------------
def test_central_matching_needs_a_recorded_justification(site):
    data, store = site
    assert matching_decision(store) is None and not central_allowed(store)
    revision = data.biometric.revision
    before = time.time()
    decision = justify(data, store, SECURITY, REASON, "PIPL art. 13(1)")
    assert central_allowed(store)
    again = matching_decision(store)
    assert again == decision and (again.account, again.role) == ("acct-security", "security_administrator")
    assert before <= again.decided_at <= time.time() and again.reason == REASON
    assert again.legal_basis == "PIPL art. 13(1)"
    # the doors are told: one empty revision, which the replicas announce
    assert data.biometric.revision == revision + 1
    entry = [e for e in data.audit.entries() if e.action == "site.matching.justify"][-1]
    assert entry.actor == "acct-security" and "one matcher serves 40 doors" in entry.detail  # masked by the log

    assert revoke(data, store, SECURITY) == decision
    assert matching_decision(store) is None and not central_allowed(store)
    assert data.biometric.revision == revision + 2 and actions(data)[-1] == "site.matching.revoke"


@pytest.mark.parametrize("principal", [SYSTEM, OPERATOR, Principal("acct-auditor", Role.AUDITOR)])
def test_only_a_security_administrator_decides_the_matching_mode(site, principal):
    data, store = site
    for call in (lambda: justify(data, store, principal, REASON), lambda: revoke(data, store, principal)):
        with pytest.raises(ApplianceError) as info:
            call()
        assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert matching_decision(store) is None


@pytest.mark.parametrize(("reason", "why"), [("", "characters"), ("because", "characters"),
                                             ("x" * (MAX_REASON_CHARS + 1), "characters"),
                                             (REASON + " and the similarity threshold is 0.4", "refuses")])
def test_a_justification_is_a_bounded_sentence_and_a_bad_one_changes_nothing(site, reason, why):
    data, store = site
    revision, entries = data.biometric.revision, len(data.audit.entries())
    with pytest.raises(ApplianceError) as info:
        justify(data, store, SECURITY, reason)
    assert info.value.code is ErrorCode.CONFIG_INVALID and why in str(info.value)
    assert matching_decision(store) is None
    assert data.biometric.revision == revision and len(data.audit.entries()) == entries


def test_health_says_whether_central_matching_is_justified():
    assert health.check_matching_mode("central").status == health.WARN
    assert "decide locally" in health.check_matching_mode("local-first").detail
    justified = health.check_matching_mode("central", "acct-security", 1_800_000_000.0)
    assert justified.status == health.OK and "acct-security" in justified.detail
    assert health.check_matching_mode("local").status == health.OK


# -- retention ------------------------------------------------------------------------------
def test_audit_retention_is_at_least_three_years_and_receipts_outlive_the_log(tmp_path):
    assert MIN_AUDIT_RETENTION_DAYS >= 3 * 365
    for text, message in (("audit_retention_days = 184", "must be at least 1096"),
                          ("audit_retention_days = 2000", "audit_retention_days <= receipt_retention_days"),
                          ("event_retention_days = 0", "event_retention_days"),
                          (f"event_retention_days = {MIN_AUDIT_RETENTION_DAYS + 1}", "event_retention_days")):
        path = tmp_path / "bad.toml"
        path.write_text(f"[security]\n{text}\n")
        with pytest.raises(ApplianceError) as info:
            load_config(path)
        assert info.value.code is ErrorCode.CONFIG_INVALID and message in str(info.value)
    assert SecurityConfig().receipt_retention_days >= SecurityConfig().audit_retention_days


def door_event(event_id: str, at: float) -> EventRecord:
    return EventRecord(event_id, "door-a", "event", "pass", at, {"outcome": "accepted"})


def backdate(receipt_path: Path, data: ProtectedData, days: float) -> None:
    """A receipt issued ``days`` ago, signed by the node as it would have been then."""
    receipt = load_receipt(receipt_path)
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
    old = DeletionReceipt(**{**receipt.__dict__, "deleted_at": when.isoformat(timespec="seconds"), "signature": ""})
    receipt_path.write_text(old.signed(data.node.signing).to_json() + "\n", encoding="utf-8")


def test_the_retention_run_applies_every_limit_records_it_and_reports_the_state(site):
    data, store = site
    now = time.time()
    status = retention_status(data, store, store, now)
    assert status.last_run is None and status.overdue
    # a new site has not reached its first nightly run yet: no alarm; two days after its
    # first audited action, there is
    assert health.check_retention(status, now).status == health.OK
    keep, gone = enroll(data, 1), enroll(data, 2)
    later = now + 3 * SECONDS_PER_DAY
    assert health.check_retention(retention_status(data, store, store, later), later).status == health.WARN
    old_receipt = data.delete_subject(SECURITY, gone)
    receipt_path = data.root / RECEIPTS_DIR / f"{old_receipt.receipt_id}.json"
    backdate(receipt_path, data, data.security.receipt_retention_days + 1)
    fresh_receipt = data.delete_subject(SECURITY, enroll(data, 3))
    limit_s = data.security.event_retention_days * SECONDS_PER_DAY
    store.record_events([door_event("old-1", now - limit_s - 60), door_event("old-2", now - limit_s - 3600),
                         door_event("new-1", now - 60)], now)
    status = retention_status(data, store, store, now)
    assert set(status.over_limit) == {"door_events", "receipts"}

    run = apply_retention(data, SYSTEM, state=store, door_log=store, now=now)
    assert run.counts["door_events_pruned"] == 2 and run.counts["receipts_pruned"] == 1
    assert run.counts["templates_expired"] == 0 and run.account == "acct-system"
    assert store.event_ids() == ["new-1"]
    assert not receipt_path.exists() and (data.root / RECEIPTS_DIR / f"{fresh_receipt.receipt_id}.json").exists()
    assert data.biometric.rows(keep)  # nothing past a limit, nothing removed
    entry = [e for e in data.audit.entries() if e.action == "retention.run"][-1]
    assert entry.actor == "acct-system" and "2 door events pruned" in entry.detail
    assert "1 receipts pruned" in entry.detail

    status = retention_status(data, store, store, now + 60)
    assert status.last_run == run and not status.overdue and status.over_limit == ()
    assert status.limits.audit == MIN_AUDIT_RETENTION_DAYS and status.oldest_days["door_events"] < 1
    assert health.check_retention(status, now + 60).status == health.OK
    overdue = retention_status(data, store, store, now + 3 * SECONDS_PER_DAY)
    assert overdue.overdue and health.check_retention(overdue, now + 3 * SECONDS_PER_DAY).status == health.WARN


def test_retention_needs_the_permission(site):
    data, store = site
    with pytest.raises(ApplianceError) as info:
        apply_retention(data, Principal("acct-auditor", Role.AUDITOR), state=store, door_log=store)
    assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert retention_status(data, store, store).last_run is None


# -- the filing counter ---------------------------------------------------------------------
def test_the_filing_counter_counts_unique_enrolled_people_and_alarms_once_per_crossing(site):
    data, store = site
    assert filing_status(data).count == 0 and filing_status(data).level == OK
    people = [enroll(data, seed) for seed in range(3)]
    data.enroll(OPERATOR, people[0], Template(normalise(np.ones(512)), *PACK), np.zeros(1, np.float32))
    data.delete_subject(SECURITY, people[2])
    status = filing_status(data, warn_at=2, file_at=3)  # a re-enrollment is the same person; the deleted one is gone
    assert (status.count, status.level) == (2, WARN)
    assert health.check_filing(status).status == health.WARN

    assert raise_filing_alarm(data, SYSTEM, store, status)
    assert not raise_filing_alarm(data, SYSTEM, store, filing_status(data, warn_at=2, file_at=3))  # once
    third = enroll(data, 7)
    due = filing_status(data, warn_at=2, file_at=3)
    assert due.level == FILE and "30 working days" in due.detail
    assert health.check_filing(due).status == health.FAIL
    assert raise_filing_alarm(data, SYSTEM, store, due)
    alarms = [e for e in data.audit.entries() if e.action == "filing.alarm"]
    assert [(e.object, e.result) for e in alarms] == [(WARN, "alarm"), (FILE, "alarm")]

    data.delete_subject(SECURITY, third)  # back below: re-armed, no alarm for falling
    assert not raise_filing_alarm(data, SYSTEM, store, filing_status(data, warn_at=2, file_at=3))
    enroll(data, 8)
    assert raise_filing_alarm(data, SYSTEM, store, filing_status(data, warn_at=2, file_at=3))
    assert len([e for e in data.audit.entries() if e.action == "filing.alarm"]) == 3


def test_the_site_thresholds_are_the_measures_numbers(site):
    data, _ = site
    status = filing_status(data)
    assert (status.warn_at, status.file_at) == (80_000, 100_000)
