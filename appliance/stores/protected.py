"""The central node's protected data: one object that the matcher and the admin CLI use.

It ties the stores, keys, consent rules, roles and the audit log together so that each
operation on personal data is checked, performed and logged the same way everywhere:
enrollment needs consent, verification answers pass/fail only, deletion really deletes.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from appliance import paths
from appliance.config import Config, SecurityConfig
from appliance.errors import ApplianceError
from appliance.stores.audit import SECONDS_PER_DAY, AuditLog
from appliance.security.consent import ENROLL_SCOPE, ConsentRecord, Person, check_enrollable
from appliance.security.envelope import NodeKeys
from appliance.security.keys import EnvKeyProvider, FileKeyProvider, KeyProvider
from appliance.security.masking import mask_record, mask_text, reveal
from appliance.security.roles import Permission, Principal, require, require_any
from appliance.stores.biometric import BiometricStore
from appliance.stores.deletion import DeletionReceipt, check_erasable, erase_subject, prune_receipts
from appliance.stores.device import Outbox
from appliance.stores.identity import IdentityRegistry
from appliance.stores.keyvault import KeyVault
from appliance.vision.templates import Template, check_compatible

BIOMETRIC_FILE = "biometric.db"
IDENTITY_FILE = "identity.db"
KEYVAULT_FILE = "keyvault.db"
AUDIT_FILE = "audit.db"
OUTBOX_FILE = "outbox.db"
RECEIPTS_DIR = "receipts"
KEYS_DIR = "keys"
STORE_FILES = (BIOMETRIC_FILE, IDENTITY_FILE, KEYVAULT_FILE, AUDIT_FILE)
# stores that a routine backup copies; the key vault is left out on purpose (crypto-shredding)
BACKED_UP = (BIOMETRIC_FILE, IDENTITY_FILE, AUDIT_FILE)
PAGE_SIZE = 50  # people per page by default (console, API)
MAX_PAGE_SIZE = 200  # a page never holds more: each row costs a template-count query
MAX_QUERY_CHARS = 100  # longer search text is cut (no name or staff number is that long)


def key_provider(security: SecurityConfig, root: Path | None = None) -> KeyProvider:
    if security.key_provider == "env":
        return EnvKeyProvider()
    return FileKeyProvider(Path(security.key_dir) if security.key_dir else (root or paths.data_dir()) / KEYS_DIR)


class DoorLog(Protocol):
    """The matcher's door log (``appliance.matcher.sync_store.SyncStore``) as retention sees it."""

    def prune_events(self, before: float) -> int: ...

    def oldest_event_at(self) -> float | None: ...


@dataclass(frozen=True)
class RetentionReport:
    templates_expired: int
    audit_entries_pruned: int
    events_pruned: int  # a door's outbox
    receipts: tuple[DeletionReceipt, ...]
    door_events_pruned: int = 0  # the matcher's door log
    receipts_pruned: int = 0

    def counts(self) -> dict[str, int]:
        """What this run removed, by kind (the audit entry, the status, the command's output)."""
        return {"templates_expired": self.templates_expired, "audit_entries_pruned": self.audit_entries_pruned,
                "outbox_events_pruned": self.events_pruned, "door_events_pruned": self.door_events_pruned,
                "receipts_pruned": self.receipts_pruned}


class ProtectedData:
    def __init__(self, root: Path, keys: KeyProvider, security: SecurityConfig | None = None) -> None:
        security = security or SecurityConfig()
        self.root = Path(root)
        self.security = security
        self.keys = keys  # the stores beside these (the matcher's sync store) open with the same provider
        self.node = NodeKeys.from_provider(security.node_id, keys, security.crypto_suite)
        self.identity = IdentityRegistry.open(self.root / IDENTITY_FILE, keys)
        self.biometric = BiometricStore.open(self.root / BIOMETRIC_FILE, keys)
        self.vault = KeyVault.open_with(self.root / KEYVAULT_FILE, keys)
        self.audit = AuditLog.open_with(self.root / AUDIT_FILE, keys, security.node_id,
                                        security.audit_checkpoint_every,
                                        head_max_age_s=security.audit_head_max_age_s)

    @classmethod
    def from_config(cls, config: Config, root: Path | None = None) -> "ProtectedData":
        root = root or paths.data_dir()
        return cls(root, key_provider(config.security, root), config.security)

    @property
    def stores(self) -> dict[str, object]:
        return {IDENTITY_FILE: self.identity, BIOMETRIC_FILE: self.biometric, KEYVAULT_FILE: self.vault,
                AUDIT_FILE: self.audit}

    # -- people and consent -------------------------------------------------------------
    def register_person(self, principal: Principal, person: Person) -> None:
        self.identity.add_person(principal, person)
        self.audit.append(principal, "person.register", person.subject_id, "ok",
                          f"alternative {person.alternative.value}")

    def record_consent(self, principal: Principal, consent: ConsentRecord) -> None:
        self.identity.add_consent(principal, consent)
        self.audit.append(principal, "consent.record", consent.subject_id, "ok",
                          f"scope {consent.scope} text {consent.text_version} guardian {consent.by_guardian}")

    def enroll(self, principal: Principal, subject_id: str, template: Template, quality: np.ndarray) -> int:
        """Store a template only for a registered person with valid consent; returns the revision."""
        require(principal, Permission.ENROLL)
        try:
            person = self.identity.person(principal, subject_id)
            check_enrollable(person, self.identity.consents(principal, subject_id))
        except ApplianceError as exc:
            self.audit.append(principal, "template.enroll", subject_id, "refused", exc.code.name)
            raise
        revision = self.biometric.put_template(principal, subject_id, template, quality, self.vault)
        self.audit.append(principal, "template.enroll", subject_id, "ok", f"pack {template.pack_label}")
        return revision

    def verify(self, principal: Principal, subject_id: str, probe: Template, threshold: float) -> bool:
        """1:1 check; only pass/fail leaves this method (the similarity stays inside)."""
        require(principal, Permission.VERIFY)
        stored = self.biometric.template(principal, subject_id, probe.pack_id, probe.pack_version, self.vault)
        check_compatible(stored, probe)
        accepted = bool(np.dot(stored.vector, probe.vector) >= threshold)
        self.audit.append(principal, "verify", subject_id, "pass" if accepted else "fail")
        return accepted

    def people(self, principal: Principal) -> list[dict]:
        """Every person, masked (for listings and reports)."""
        require(principal, Permission.READ_IDENTITY_MASKED)
        return [self._masked_row(self.identity.person(principal, s)) for s in self.identity.subject_ids(principal)]

    def people_page(self, principal: Principal, query: str = "", offset: int = 0,
                    limit: int = PAGE_SIZE) -> tuple[list[dict], int]:
        """One page of people for the console and the API, masked, newest first, and how many
        match in all. ``query`` searches the name and the staff number; ``limit`` is capped at
        ``MAX_PAGE_SIZE`` and a negative offset counts as 0."""
        require(principal, Permission.READ_IDENTITY_MASKED)
        limit = min(max(1, int(limit)), MAX_PAGE_SIZE)
        people, total = self.identity.page(principal, query.strip()[:MAX_QUERY_CHARS], max(0, int(offset)), limit)
        return [self._masked_row(person) for person in people], total

    def person_masked(self, principal: Principal, subject_id: str) -> dict:
        """One person, masked, with the template count and the consents on record (scope,
        notice version, reference, when, by a guardian or not, withdrawn when)."""
        require(principal, Permission.READ_IDENTITY_MASKED)
        record = self._masked_row(self.identity.person(principal, subject_id))
        record["consents"] = [{"scope": c.scope, "text_version": c.text_version, "reference": mask_text(c.reference),
                               "consented_at": c.consented_at, "by_guardian": c.by_guardian,
                               "withdrawn_at": c.withdrawn_at} for c in self.identity.consents(principal, subject_id)]
        return record

    def _masked_row(self, person: Person) -> dict:
        record = _person_dict(person)
        record["templates"] = len(self.biometric.rows(person.subject_id))
        return mask_record(record)

    def reveal(self, principal: Principal, subject_id: str) -> dict:
        """An unmasked identity record for a role allowed to see it; the access is logged."""
        require_any(principal, Permission.READ_IDENTITY_MASKED, Permission.READ_IDENTITY_UNMASKED)
        return reveal(_person_dict(self.identity.person(principal, subject_id)), principal, self.audit, subject_id)

    # -- deletion -----------------------------------------------------------------------
    def delete_subject(self, principal: Principal, subject_id: str, reason: str = "request") -> DeletionReceipt:
        """Erase the subject everywhere; ``SUBJECT_NOT_FOUND`` for an id never held and
        ``SUBJECT_ALREADY_DELETED`` (with the first receipt's id) for one erased before - in
        both cases nothing is written but the refusal in the audit log."""
        require(principal, Permission.DELETE_SUBJECT)
        self._check_erasable(principal, subject_id, "subject.delete")
        return self._erase(principal, subject_id, reason, keep_identity=False)

    def withdraw_consent(self, principal: Principal, subject_id: str) -> DeletionReceipt:
        """Withdrawal is recorded, then the subject is deleted (identity, templates, data key);
        refused like ``delete_subject`` when there is nothing to withdraw from."""
        require(principal, Permission.WITHDRAW_CONSENT)
        self._check_erasable(principal, subject_id, "consent.withdraw")
        self.identity.withdraw_consents(principal, subject_id, ENROLL_SCOPE, time.time())
        self.audit.append(principal, "consent.withdraw", subject_id, "ok")
        return self._erase(principal, subject_id, "consent withdrawn", keep_identity=False)

    def _check_erasable(self, principal: Principal, subject_id: str, action: str) -> None:
        """``deletion.check_erasable``, with the refusal logged under the action asked for."""
        try:
            check_erasable(principal, subject_id, self.identity, self.biometric, self.vault, self.root / RECEIPTS_DIR,
                           self.node.signing.public_key())
        except ApplianceError as exc:
            first = getattr(exc, "receipt_id", "")
            self.audit.append(principal, action, subject_id, "refused",
                              exc.code.name + (f"; first receipt {first}" if first else ""))
            raise

    def _erase(self, principal: Principal, subject_id: str, reason: str, keep_identity: bool) -> DeletionReceipt:
        receipt = erase_subject(principal, subject_id, reason, None if keep_identity else self.identity,
                                self.biometric, self.vault, self.node.signing, self.node.node_id,
                                self.root / RECEIPTS_DIR)
        self.audit.append(principal, "subject.delete", subject_id, "ok",
                          f"{reason}; receipt {receipt.receipt_id}")
        return receipt

    # -- retention ----------------------------------------------------------------------
    def run_retention(self, principal: Principal, now: float | None = None, outbox: Outbox | None = None,
                      door_log: DoorLog | None = None) -> RetentionReport:
        """Apply every retention limit of ``[security]`` and record in the audit log what went:
        templates past their maximum age (crypto-shredded, tombstoned), audit entries past the
        log's retention (kept verifiable from a signed checkpoint), signed deletion receipts
        past theirs and, when given, a door's outbox events and the matcher's door log."""
        require(principal, Permission.RUN_RETENTION)
        now = time.time() if now is None else now
        days = self.security
        # receipts first: the receipts this run issues are never older than their limit
        receipts_pruned = prune_receipts(self.root / RECEIPTS_DIR, self.node.signing.public_key(),
                                         now - days.receipt_retention_days * SECONDS_PER_DAY)
        cutoff = now - days.template_retention_days * SECONDS_PER_DAY
        expired = sorted({row.subject_id for row in self.biometric.rows() if row.updated < cutoff})
        receipts = tuple(self._erase(principal, s, "retention", keep_identity=True) for s in expired)
        pruned = self.audit.prune(principal, days.audit_retention_days, now)
        event_cutoff = now - days.event_retention_days * SECONDS_PER_DAY
        events = 0 if outbox is None else outbox.prune(event_cutoff)
        door_events = 0 if door_log is None else door_log.prune_events(event_cutoff)
        report = RetentionReport(len(expired), pruned, events, receipts, door_events, receipts_pruned)
        self.audit.append(principal, "retention.run", "stores", "ok",
                          ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in report.counts().items()))
        return report

    # -- maintenance --------------------------------------------------------------------
    def check(self, principal: Principal) -> dict[str, list[str]]:
        require(principal, Permission.MANAGE_STORES)
        problems = {name: store.integrity_problems() for name, store in self.stores.items()}
        self.audit.append(principal, "stores.check", "stores", "ok" if not any(problems.values()) else "problems")
        return problems

    def backup(self, principal: Principal, destination: Path) -> list[Path]:
        require(principal, Permission.MANAGE_STORES)
        written = [self.stores[name].backup(Path(destination) / name) for name in BACKED_UP]
        self.audit.append(principal, "stores.backup", "stores", "ok", f"{len(written)} stores")
        return written

    def restore(self, principal: Principal, source: Path) -> list[str]:
        require(principal, Permission.MANAGE_STORES)
        restored = []
        for name in (BIOMETRIC_FILE, IDENTITY_FILE):  # the audit log is never overwritten
            if (Path(source) / name).exists():
                self.stores[name].restore(Path(source) / name)
                restored.append(name)
        self.audit.append(principal, "stores.restore", "stores", "ok", ", ".join(restored))
        return restored

    def close(self) -> None:
        for store in self.stores.values():
            store.close()

    def __enter__(self) -> "ProtectedData":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _person_dict(person: Person) -> dict:
    record = asdict(person)
    record["age_band"], record["alternative"] = person.age_band.value, person.alternative.value
    return record
