"""Evidence read from the live site: the audit log and its verification, keys, devices and
deletion confirmations, accounts, the transport's PKI.

Everything is gathered once, before any requirement is judged, into one :class:`SiteEvidence`
that the checks read (``appliance.compliance.checks``); nothing here writes to a store, and
nothing here reads a person's identity record: only pseudonyms, counts and dates. Evidence the
site cannot give (no PKI yet, key files from the environment) is recorded as such, with why,
so the row that needs it says so rather than guessing.
"""
from __future__ import annotations

import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from appliance import paths
from appliance.broker.pki import ProjectPKI
from appliance.config import Config
from appliance.matcher.deletions import DeletionConfirmations
from appliance.matcher.subject_access import access_receipts
from appliance.matcher.site_policy import MatchingDecision, matching_decision
from appliance.matcher.sync_store import SYNC_FILE, SyncStore, open_sync_store
from appliance.ops.accounts import ACCOUNTS_DB, ACCOUNTS_FILE, Accounts
from appliance.ops.bundle import DIRECTORY_FILE
from appliance.ops.filing import FilingStatus, filing_status
from appliance.ops.retention import RetentionStatus, retention_status
from appliance.protocol.directory import NodeDirectory
from appliance.security.keys import ALL_KEYS, KEY_FILE_SUFFIX
from appliance.security.roles import Principal, Role
from appliance.security.suites import SuitesInUse, suites_in_use
from appliance.stores import audit_devices
from appliance.stores.audit_chain import AuditEntry, AuditVerdict
from appliance.stores.deletion import signed_receipts
from appliance.stores.protected import KEYS_DIR, RECEIPTS_DIR, ProtectedData, key_provider

PKI_DIR = "pki"
DEVICE_ROLE = "device"
BROKER_TEMPLATE = "config/mosquitto/mosquitto.conf.template"
# what the broker's configuration must say for mutually authenticated TLS
BROKER_TLS_LINES = ("require_certificate true", "tls_version tlsv1.2")
OWNER_ONLY = stat.S_IRWXG | stat.S_IRWXO


@dataclass(frozen=True)
class KeyState:
    """One key: where it is, whether only its owner can read it, how old it is."""

    name: str
    present: bool
    owner_only: bool | None = None  # None: not a file (environment provider)
    modified_at: float | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class TlsState:
    ca_present: bool
    ca_valid_until: float | None
    broker_requires_certificates: bool
    devices_active: tuple[str, ...]
    devices_revoked: tuple[str, ...]


@dataclass
class SiteEvidence:
    """What the checks read, gathered once (the other helpers' duties through their own
    public functions: matching decision, filing counter, retention status, suites in use)."""

    config: Config
    data_root: Path
    now: float
    audit_verdict: AuditVerdict
    audit_actions: Counter[str]
    audit_ok: Counter[str]  # entries of each action whose result is "ok"
    audit_last: dict[str, float]  # action -> time of its latest entry
    audit_oldest: float | None
    key_provider: str
    keys: tuple[KeyState, ...]
    rotations: dict[str, int]  # what was rotated (as the log names it) -> how many times
    tls: TlsState
    unconfirmed: list[dict]  # deletions some active device has not confirmed (pseudonyms only)
    tombstones: int
    deletion_receipts: int  # signed by this node and verified
    access_receipts: int  # subject access receipts signed by this node and verified
    accounts_by_role: dict[str, int]
    matching: MatchingDecision | None  # appliance.matcher.site_policy
    filing: FilingStatus  # appliance.ops.filing
    retention: RetentionStatus  # appliance.ops.retention
    suites: SuitesInUse  # appliance.security.suites
    door_decisions: int  # appliance.stores.audit_devices
    door_decisions_unproven: list[str]  # "seq: why" for entries whose device signature fails
    records: dict[str, Any] = field(default_factory=dict)  # appliance.compliance.records


def _audit_summary(entries: list[AuditEntry]) -> tuple[Counter[str], dict[str, float], dict[str, int]]:
    actions: Counter[str] = Counter(e.action for e in entries)
    last: dict[str, float] = {}
    rotations: Counter[str] = Counter()
    for entry in entries:
        last[entry.action] = max(last.get(entry.action, 0.0), entry.time)
        if entry.action == "keys.rotate" and entry.result == "ok":
            rotations[entry.object] += 1
    return actions, last, dict(rotations)


def key_states(config: Config, root: Path) -> tuple[str, tuple[KeyState, ...]]:
    """Each key of the site: present, owner-only, file age and fingerprint (never the key)."""
    provider = key_provider(config.security, root)
    if config.security.key_provider != "file":
        return config.security.key_provider, tuple(
            KeyState(n, provider.exists(n), fingerprint=provider.get(n).fingerprint if provider.exists(n) else "")
            for n in (*ALL_KEYS, ACCOUNTS_DB))
    folder = Path(config.security.key_dir) if config.security.key_dir else root / KEYS_DIR
    states = []
    for name in (*ALL_KEYS, ACCOUNTS_DB):
        path = folder / f"{name}{KEY_FILE_SUFFIX}"
        if not path.is_file():
            states.append(KeyState(name, False))
            continue
        info = path.stat()
        states.append(KeyState(name, True, not info.st_mode & OWNER_ONLY, info.st_mtime,
                               provider.get(name).fingerprint))
    return "file", tuple(states)


def tls_state(root: Path) -> TlsState:
    """The project PKI's CA, which devices hold a certificate, and the broker's TLS rule."""
    pki = ProjectPKI(root / PKI_DIR)
    valid_until = None
    if pki.ca_cert.is_file():
        valid_until = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()).not_valid_after_utc.timestamp()
    template = paths.resource(BROKER_TEMPLATE)
    text = template.read_text(encoding="utf-8") if template.is_file() else ""
    lines = {" ".join(line.split()) for line in text.splitlines()}
    identities = pki.identities() if pki.folder.is_dir() else {}
    devices = {name: i for name, i in identities.items() if i.role == DEVICE_ROLE}
    return TlsState(pki.ca_cert.is_file(), valid_until, all(rule in lines for rule in BROKER_TLS_LINES),
                    tuple(sorted(n for n, i in devices.items() if not i.revoked)),
                    tuple(sorted(n for n, i in devices.items() if i.revoked)))


def _unconfirmed(data: ProtectedData, store: SyncStore | None, devices: list[str], now: float) -> list[dict]:
    """``matcher.deletions``' list; with no sync store yet no device has confirmed anything."""
    if store is not None:
        return DeletionConfirmations(data, store).unconfirmed(devices)
    if not devices:
        return []
    return [{"subject_id": t.subject_id, "revision": t.revision, "deleted_at": t.deleted_at,
             "age_s": round(now - t.deleted_at, 1), "missing": sorted(devices)}
            for t in data.biometric.tombstones()]


def _accounts_by_role(config: Config, data: ProtectedData) -> dict[str, int]:
    keys = key_provider(config.security, data.root)
    if not keys.exists(ACCOUNTS_DB) or not (data.root / ACCOUNTS_FILE).exists():
        return {}
    accounts = Accounts.open(data.root, keys, data.audit, config.ops.session_idle_s)
    try:
        return {role.value: len(accounts.names(role)) for role in Role}
    finally:
        accounts.close()


def _unproven(directory: NodeDirectory, decisions: list[AuditEntry]) -> list[str]:
    """Door decisions whose signed evidence does not check out against the device's key."""
    def key_of(device: str):
        peer = directory.peers.get(device)
        return None if peer is None else peer.signing

    return [f"{e.seq}: {why}" for e in decisions if (why := audit_devices.evidence_problem(e, key_of))]


def collect(config: Config, data: ProtectedData, principal: Principal, max_head_age_s: float | None,
            now: float | None = None) -> SiteEvidence:
    """Everything the checks read from the stores, keys and PKI of ``data``'s site."""
    now = time.time() if now is None else now
    verdict = data.audit.verify(principal, max_head_age_s=max_head_age_s, now=now)
    entries = data.audit.entries()
    actions, last, rotations = _audit_summary(entries)
    public = data.node.signing.public_key()
    provider, keys = key_states(config, data.root)
    tls = tls_state(data.root)
    # the sync store holds the site's decisions, last retention run and door log; a site whose
    # matcher never ran has none, and opening it here would create it
    store = open_sync_store(data, key_provider(config.security, data.root)) \
        if (data.root / SYNC_FILE).exists() else None
    try:
        unconfirmed = _unconfirmed(data, store, list(tls.devices_active), now)
        decision = matching_decision(store) if store is not None else None
        retention = retention_status(data, store, store, now)
    finally:
        if store is not None:
            store.close()
    decisions = audit_devices.device_decisions(entries)
    directory = NodeDirectory.load(data.root / DIRECTORY_FILE)
    return SiteEvidence(
        config=config, data_root=data.root, now=now, audit_verdict=verdict, audit_actions=actions,
        audit_ok=Counter(e.action for e in entries if e.result == "ok"), audit_last=last,
        audit_oldest=entries[0].time if entries else None, key_provider=provider, keys=keys,
        rotations=rotations, tls=tls, unconfirmed=unconfirmed, tombstones=len(data.biometric.tombstones()),
        deletion_receipts=sum(1 for _ in signed_receipts(data.root / RECEIPTS_DIR, public)),
        access_receipts=len(access_receipts(data.root, public)),
        accounts_by_role=_accounts_by_role(config, data), matching=decision, filing=filing_status(data),
        retention=retention, suites=suites_in_use(config, directory), door_decisions=len(decisions),
        door_decisions_unproven=_unproven(directory, decisions))
