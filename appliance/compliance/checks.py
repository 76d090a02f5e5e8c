"""The checks: each requirement row names one, and :func:`judge` adds the parts every row may
carry (tests that must have passed, configuration conditions, values and log counts shown).

A check reads only the gathered :class:`SiteEvidence`, so the whole report judges one
consistent picture of the site. Its status is the worst of its parts: a row whose evidence is
fine but whose tests failed is "not met", and each part that falls short says why.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appliance.compliance.checks_files import (
    Finding, check_document, check_identification_report, check_pad_report, check_pipeline_bench,
    check_verification_report, document_part, listed, tests_part,
)
from appliance.compliance.evidence import SiteEvidence
from appliance.compliance.requirements import (
    MET, NEEDS_DOCUMENT, NOT_APPLICABLE, NOT_MET, Condition, Requirement,
)
from appliance.compliance.timefmt import days, utc
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops import filing
from appliance.security import keys as keynames
from appliance.security.masking import mask_text
from appliance.security.roles import Role

# the keys of the central stores and the node: a site without one of them is not protected
REQUIRED_KEYS = (keynames.BIOMETRIC_DB, keynames.IDENTITY_DB, keynames.KEYVAULT_DB, keynames.AUDIT_DB,
                 keynames.TEMPLATE_WRAP, keynames.NODE_SIGNING, keynames.NODE_AGREEMENT)
SEPARATE_KEYS = (keynames.IDENTITY_DB, keynames.BIOMETRIC_DB)
SM_SUITE = "sm"
SUBJECT_EXPORT = "subject.export"  # the audit action of a subject access request (AUDITTRAIL)
SEPARATED_ROLES = (Role.SECURITY_ADMIN, Role.AUDITOR)  # S-AC-1: who must exist apart

Check = Callable[[Requirement, SiteEvidence], Finding]


def check_tested(req: Requirement, ev: SiteEvidence) -> Finding:
    """Evaluated by its ``tests`` (and ``config``) parts alone."""
    if not req.tests:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement {req.id}: check 'tested' needs tests")
    return Finding(MET)


def check_gap(req: Requirement, ev: SiteEvidence) -> Finding:
    """Known not to be met yet; the row's ``reason`` says what is missing."""
    return Finding(NOT_MET, [], [req.reason])


def check_not_applicable(req: Requirement, ev: SiteEvidence) -> Finding:
    return Finding(NOT_APPLICABLE, [req.reason])


def check_audit_chain(req: Requirement, ev: SiteEvidence) -> Finding:
    """``AuditLog.verify``: hash chain, signed checkpoints and prune records, signed head."""
    verdict = ev.audit_verdict
    if not verdict.ok:
        where = "" if verdict.first_bad is None else f"first bad entry {verdict.first_bad}: "
        return Finding(NOT_MET, [f"{verdict.entries} entries checked"], [f"audit log verification failed: {where}"
                                                                        f"{verdict.reason}"])
    return Finding(MET, [f"audit chain, signed checkpoints and signed head intact: {verdict.entries} entries, "
                         f"head signed {utc(verdict.head_time)}, oldest entry {utc(ev.audit_oldest)}"])


def check_audit_coverage(req: Requirement, ev: SiteEvidence) -> Finding:
    """Which kinds of action the log holds, door decisions included, in a verified chain."""
    families: dict[str, int] = {}
    for action, count in ev.audit_actions.items():
        families[action.split(".")[0]] = families.get(action.split(".")[0], 0) + count
    evidence = [f"{len(ev.audit_actions)} kinds of action in {sum(ev.audit_actions.values())} entries: "
                + ", ".join(f"{k} {v}" for k, v in sorted(families.items())),
                f"door decisions entered with the device's signature: {ev.door_decisions}"]
    if not ev.audit_verdict.ok:
        return Finding(NOT_MET, evidence, ["the audit chain does not verify (S-LOG-3)"])
    return Finding(MET, evidence)


def check_device_decisions(req: Requirement, ev: SiteEvidence) -> Finding:
    """Door decisions in the chain, each with a device signature that checks out."""
    evidence = [f"door decisions in the audit chain: {ev.door_decisions}, each with its original time and the "
                "device's signed event"]
    reasons = [f"door decision entry {line}" for line in listed(ev.door_decisions_unproven)]
    if not ev.audit_verdict.ok:
        reasons.append("the audit chain does not verify (S-LOG-3)")
    return Finding(NOT_MET if reasons else MET, evidence, reasons)


def check_keys(req: Requirement, ev: SiteEvidence) -> Finding:
    """Key files: present, readable by their owner only, younger than ``max_age_days``."""
    if ev.key_provider != "file":
        return Finding(NOT_MET, [f"keys from the {ev.key_provider!r} provider"],
                       ["keys come from environment variables (meant for tests): use key_provider = \"file\""])
    max_age_s = float(req.param("max_age_days")) * 86400
    evidence, reasons = [], []
    for key in ev.keys:
        if not key.present:
            if key.name in REQUIRED_KEYS:
                reasons.append(f"key {key.name} missing")
            continue
        age = ev.now - (key.modified_at or ev.now)
        evidence.append(f"{key.name}: fingerprint {key.fingerprint}, written {utc(key.modified_at)} "
                        f"({days(age)} ago){'' if key.owner_only else ', READABLE BY OTHERS'}")
        if not key.owner_only:
            reasons.append(f"key {key.name} is readable by others than its owner")
        if age > max_age_s:
            reasons.append(f"key {key.name} is {days(age)} old, older than {req.param('max_age_days')} days")
    rotated = ", ".join(f"{name} x{count}" for name, count in sorted(ev.rotations.items())) or "none recorded"
    evidence.append(f"rotations in the audit log: {rotated}")
    return Finding(NOT_MET if reasons else MET, evidence, reasons)


def check_separate_keys(req: Requirement, ev: SiteEvidence) -> Finding:
    """Identity and biometric stores are separate SQLCipher files under different keys."""
    found = {k.name: k for k in ev.keys if k.present}
    missing = [name for name in SEPARATE_KEYS if name not in found]
    if missing:
        return Finding(NOT_MET, [], [f"key {', '.join(missing)} missing"])
    prints = {found[name].fingerprint for name in SEPARATE_KEYS}
    evidence = [f"identity.db and biometric.db: separate SQLCipher files, keys {', '.join(sorted(prints))}",
                "templates are keyed by a random pseudonym; names live in identity.db only"]
    if len(prints) < len(SEPARATE_KEYS):
        return Finding(NOT_MET, evidence, ["the identity and biometric stores share one key"])
    return Finding(MET, evidence)


def check_transport_tls(req: Requirement, ev: SiteEvidence) -> Finding:
    """The project CA, the broker's mutual-TLS rule, and which devices hold certificates."""
    tls = ev.tls
    required = "yes" if tls.broker_requires_certificates else "no"
    evidence = [f"broker requires client certificates (TLS 1.2 or later): {required}",
                f"devices with a certificate: {len(tls.devices_active)} active "
                f"({', '.join(listed(list(tls.devices_active))) or 'none'}), {len(tls.devices_revoked)} revoked"]
    reasons = []
    if not tls.ca_present:
        reasons.append("no project CA: run 'appliance provision broker' first")
    elif tls.ca_valid_until is not None:
        evidence.append(f"CA certificate valid until {utc(tls.ca_valid_until)}")
        if tls.ca_valid_until < ev.now:
            reasons.append("the CA certificate has expired")
    if not tls.broker_requires_certificates:
        reasons.append("the broker configuration does not require client certificates")
    return Finding(NOT_MET if reasons else MET, evidence, reasons)


def check_matching_mode(req: Requirement, ev: SiteEvidence) -> Finding:
    """Central matching only with a recorded justification (appliance.matcher.site_policy)."""
    configured = f"[offline] mode = {ev.config.offline.mode}"
    decision = ev.matching
    if decision is None:
        return Finding(MET, [configured, "no justification for central matching on record: the doors decide from "
                                         "their own cache and no template leaves them"])
    evidence = [configured, f"central matching justified by account {decision.account} ({decision.role}) on "
                            f"{utc(decision.decided_at)}: {mask_text(decision.reason)}"]
    if not decision.legal_basis:
        return Finding(NEEDS_DOCUMENT, evidence, ["no legal basis or separate-consent reference recorded with "
                                                  "the justification"])
    return Finding(MET, [*evidence, f"basis: {mask_text(decision.legal_basis)}"])


def check_retention(req: Requirement, ev: SiteEvidence) -> Finding:
    """The configured limits, when the maintenance job last applied them, what is older."""
    status = ev.retention
    limits = status.limits
    evidence = [f"limits: templates {limits.templates} d, door events {limits.door_events} d, audit "
                f"{limits.audit} d, receipts {limits.receipts} d",
                "oldest held: " + ", ".join(f"{k} {'none' if v is None else f'{v:.1f} d'}"
                                            for k, v in status.oldest_days.items())]
    run = status.last_run
    if run is not None:
        evidence.append(f"last run {utc(run.at)} by {run.account}: "
                        + ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items())))
    reasons = []
    if status.overdue:
        reasons.append("retention never ran" if run is None else
                       f"retention last ran {days(ev.now - run.at)} ago: the nightly job has stopped")
    reasons += [f"{kind}: records older than the limit are still held" for kind in status.over_limit]
    return Finding(NOT_MET if reasons else MET, evidence, reasons)


def check_deletions_confirmed(req: Requirement, ev: SiteEvidence) -> Finding:
    """Every deletion confirmed by every active device (``appliance subject unconfirmed``)."""
    devices = len(ev.tls.devices_active)
    evidence = [f"deletions on record: {ev.tombstones}; active devices: {devices}; signed deletion receipts on "
                f"file: {ev.deletion_receipts}"]
    if not ev.unconfirmed:
        return Finding(MET, [*evidence, "every deletion is confirmed by every active device"])
    per_device: dict[str, int] = {}
    for pending in ev.unconfirmed:
        for device in pending["missing"]:
            per_device[device] = per_device.get(device, 0) + 1
    evidence.append("outstanding by device: " + ", ".join(f"{d} {n}" for d, n in sorted(per_device.items())))
    reasons = listed([f"deletion of {u['subject_id']} (revision {u['revision']}, {utc(u['deleted_at'])}, "
                      f"{days(u['age_s'])} ago) not confirmed by {', '.join(u['missing'])}" for u in ev.unconfirmed])
    return Finding(NOT_MET, evidence, reasons)


def check_filing(req: Requirement, ev: SiteEvidence) -> Finding:
    """Unique enrolled people against the filing thresholds (appliance.ops.filing)."""
    status = ev.filing
    evidence = [status.detail, f"alarm at {status.warn_at}, filing at {status.file_at}"]
    if status.level == filing.OK:
        return Finding(MET, evidence)
    if status.level == filing.WARN:
        return Finding(NEEDS_DOCUMENT, evidence, [f"{status.count} people: prepare the filing"])
    filed = document_part([ev.records["documents"][name] for name in req.docs]) if req.docs else None
    if filed is not None and filed.status == MET:
        return Finding(MET, [*evidence, *filed.evidence])
    return Finding(NOT_MET, evidence, [f"{status.count} people: the filing is due"])


def check_crypto_suite(req: Requirement, ev: SiteEvidence) -> Finding:
    """The envelope suites in use (appliance.security.suites)."""
    suites = ev.suites
    evidence = [f"configured here: {suites.configured}; in use: {', '.join(suites.suites)}; SM2 library: "
                f"{suites.library}",
                "nodes: " + (", ".join(f"{n} {s}" for n, s in sorted(suites.by_node.items())) or "none")]
    if SM_SUITE not in suites.suites:
        return Finding(NEEDS_DOCUMENT, evidence, ["default suite only: record the site's protection level (a "
                                                  "level-3 site selects the SM suite)"])
    behind = sorted(n for n, s in suites.by_node.items() if s != SM_SUITE)
    if behind:
        return Finding(NOT_MET, evidence, [f"migration to SM unfinished: {', '.join(listed(behind))} still on "
                                           "the default suite"])
    return Finding(MET, evidence)


def check_accounts(req: Requirement, ev: SiteEvidence) -> Finding:
    """Accounts by role: a security administrator and an auditor exist, apart."""
    counts = ev.accounts_by_role
    evidence = ["accounts: " + (", ".join(f"{role} {n}" for role, n in counts.items()) or "none")]
    reasons = [f"no {role.value} account" for role in SEPARATED_ROLES if not counts.get(role.value)]
    return Finding(NOT_MET if reasons else MET, evidence, reasons)


def check_subject_access(req: Requirement, ev: SiteEvidence) -> Finding:
    """Access requests answered (``appliance subject export``): each export in the audit log
    has its signed receipt on file (``appliance.matcher.subject_access``)."""
    answered, receipts = ev.audit_ok.get(SUBJECT_EXPORT, 0), ev.access_receipts
    last = ev.audit_last.get(SUBJECT_EXPORT)
    evidence = [f"subject access requests answered: {answered}; signed access receipts on file: {receipts}"
                + (f"; the last on {utc(last)}" if last else "")]
    if receipts < answered:
        return Finding(NOT_MET, evidence, [f"{answered - receipts} answered requests have no verifiable receipt "
                                           "in <data dir>/access-receipts/"])
    return Finding(MET, evidence)


CHECKS: dict[str, Check] = {
    "tested": check_tested, "gap": check_gap, "not_applicable": check_not_applicable,
    "document": check_document, "audit_chain": check_audit_chain, "audit_coverage": check_audit_coverage,
    "device_decisions": check_device_decisions, "keys": check_keys, "separate_keys": check_separate_keys,
    "transport_tls": check_transport_tls, "matching_mode": check_matching_mode, "retention": check_retention,
    "deletions_confirmed": check_deletions_confirmed, "filing": check_filing, "crypto_suite": check_crypto_suite,
    "accounts": check_accounts, "subject_access": check_subject_access,
    "verification_report": check_verification_report, "identification_report": check_identification_report,
    "pad_report": check_pad_report, "pipeline_bench": check_pipeline_bench,
}
KNOWN_CHECKS = frozenset(CHECKS)


def config_value(config: Any, key: str) -> Any:
    """``table.key`` of the live configuration; an unknown key is an error of the list."""
    value = config
    for part in key.split("."):
        if not hasattr(value, part):
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement list names unknown configuration key {key!r}")
        value = getattr(value, part)
    return value


def _holds(found: Any, cond: Condition) -> bool:
    op, want = cond.op, cond.value
    if op in ("in", "not in"):
        return (found in want) == (op == "in")
    return {">=": found >= want, "<=": found <= want, ">": found > want, "<": found < want,
            "==": found == want}[op]


def config_part(req: Requirement, ev: SiteEvidence) -> Finding:
    evidence, reasons = [], []
    for cond in req.config:
        found = config_value(ev.config, cond.key)
        (evidence if _holds(found, cond) else reasons).append(
            f"{cond.key} = {found!r}" + ("" if _holds(found, cond) else f", needs {cond.op} {cond.value!r}"))
    return Finding(NOT_MET if reasons else MET, evidence, reasons)


def judge(req: Requirement, ev: SiteEvidence) -> Finding:
    """The row's check, then its tests, configuration conditions, shown values and log counts."""
    parts = [CHECKS[req.check](req, ev)]
    if req.check != "not_applicable":
        if req.tests:
            parts.append(tests_part(req, ev))
        if req.config:
            parts.append(config_part(req, ev))
    shown = [f"{key} = {config_value(ev.config, key)!r}" for key in req.show]
    counted = [f"audit log: {ev.audit_actions.get(a, 0)} {a}" for a in req.audit_actions]
    if shown or counted:
        parts.append(Finding(parts[0].status, shown + counted))
    return Finding.combine(parts)
