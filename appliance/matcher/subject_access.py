"""A person's request for their own data (subject access): what the site holds about them,
where, since when - and a signed receipt that the request was answered.

``export_subject`` gathers, for one pseudonym: the identity record, the consents (scope,
notice version, reference, when, by whom), the templates' enrollment dates and model packs
(never a template, never a quality vector), the door groups, the doors that hold the
template (from each door's acknowledged revision and the eligibility rules the sync follows,
access groups included; for a person with no template, their card and PIN verifier), the doors
the access rules let them open and when (``door_access``: their groups' weekly schedules, the
site's zone, their validity; every door at any time while the site has no access rules),
the door events about the person within the event retention period (the pseudonym a door
decision names: ``details.subject``), and the deletion receipts issued for them. Names and
numbers are masked unless the requester's role may read identities unmasked and asks to
(``ProtectedData.reveal``: that access is audited on its own).

The receipt records who asked, when, what was exported as a SHA-256 digest of the export and
how many items each part held - never the data itself - and is signed with the node key
(``security.signing``, domain ``appliance/subject-access-receipt/v1|``). It is kept in
``<data>/access-receipts/`` and the export is in the audit log (``subject.export``).

It lives in ``matcher`` because the doors' holdings and events are the sync store's.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.access_site import SiteAccess
from appliance.matcher.eligibility import Profiles, door_access
from appliance.matcher.sync_store import SyncStore
from appliance.security import signing
from appliance.security.masking import mask_record
from appliance.security.roles import Permission, Principal, require_any
from appliance.stores.audit import SECONDS_PER_DAY
from appliance.stores.deletion import signed_receipts
from appliance.stores.protected import RECEIPTS_DIR, ProtectedData

RECEIPT_DOMAIN = b"appliance/subject-access-receipt/v1|"
ACCESS_RECEIPTS_DIR = "access-receipts"
RECEIPT_FILE_MODE = 0o600
MAX_EVENTS = 10_000  # events listed in one export; more are counted and the export says so
HOLDS, PENDING, DELETING = "holds", "pending", "deletion not confirmed"
EVENT_DETAILS = ("reason", "decided_by", "mode")  # what an export shows of a door event's details


@dataclass(frozen=True)
class AccessReceipt:
    """Proof that a subject access request was answered: by whom, when, what (as a digest)."""

    receipt_id: str
    subject_id: str
    requested_by: str  # the account that ran the export
    role: str
    exported_at: str  # ISO 8601 UTC
    node: str
    masked: bool
    digest: str  # SHA-256 of the export's canonical JSON
    counts: dict[str, int]
    signature: str = ""

    def document(self) -> dict[str, Any]:
        body = asdict(self)
        del body["signature"]
        return body

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        return signing.verify_document(public_key, RECEIPT_DOMAIN, self.document(), self.signature)


@dataclass(frozen=True)
class SubjectExport:
    export: dict[str, Any]
    receipt: AccessReceipt

    def as_dict(self) -> dict[str, Any]:
        return {"export": self.export, "receipt": asdict(self.receipt)}


def export_digest(export: dict[str, Any]) -> str:
    """What the receipt's ``digest`` is computed over: the export's canonical JSON."""
    return hashlib.sha256(signing.canonical_json(export, ascii_only=False)).hexdigest()


def load_access_receipt(path: Path) -> AccessReceipt:
    return AccessReceipt(**json.loads(Path(path).read_text(encoding="utf-8")))


def export_subject(principal: Principal, subject_id: str, data: ProtectedData, sync: SyncStore,
                   doors: dict[str, str], *, unmasked: bool = False, now: float | None = None,
                   tz: str = "UTC") -> SubjectExport:
    """Everything held about ``subject_id``, masked unless ``unmasked`` (which needs the
    unmasked-read permission), with a signed receipt. ``doors``: every active door and its
    group; ``tz``: the site's time zone (config ``[access] timezone``) the schedules are in.
    SUBJECT_NOT_FOUND when the site holds nothing about the pseudonym."""
    require_any(principal, Permission.READ_IDENTITY_MASKED, Permission.READ_IDENTITY_UNMASKED)
    now = time.time() if now is None else now
    templates = sorted(data.biometric.rows(subject_id), key=lambda row: (row.created, row.pack_id))
    tombstone = data.biometric.tombstone(subject_id)
    receipts = [r for r in signed_receipts(data.root / RECEIPTS_DIR, data.node.signing.public_key())
                if r.subject_id == subject_id]
    person = _person(principal, subject_id, data, unmasked)
    if person is None and not templates and tombstone is None and not receipts:
        data.audit.append(principal, "subject.export", subject_id, "refused", ErrorCode.SUBJECT_NOT_FOUND.name)
        raise ApplianceError(ErrorCode.SUBJECT_NOT_FOUND, subject_id)
    since = now - data.security.event_retention_days * SECONDS_PER_DAY
    access = SiteAccess(sync, tz)
    events = sync.subject_events(subject_id, since, MAX_EVENTS + 1)
    export = {
        "subject_id": subject_id,
        "generated_at": _iso(now),
        "node": data.node.node_id,
        "masked": not unmasked,
        "person": person,
        "consents": _consents(principal, subject_id, data, unmasked) if person is not None else [],
        "templates": [{"pack_id": t.pack_id, "pack_version": t.pack_version, "enrolled_at": _iso(t.created),
                       "updated_at": _iso(t.updated), "revision": t.revision} for t in templates],
        "door_groups": sorted(sync.groups(subject_id)),
        "devices": _devices(principal, subject_id, data, sync, doors, templates, tombstone, access),
        "door_access": _door_access(subject_id, doors, access, now) if person is not None else [],
        "events": {"since": _iso(since), "retention_days": data.security.event_retention_days,
                   "truncated": len(events) > MAX_EVENTS, "items": [_event(e) for e in events[:MAX_EVENTS]]},
        "deletion_receipts": [r.document() | {"signature": r.signature} for r in receipts],
    }
    receipt = _receipt(principal, subject_id, data, export, now)
    data.audit.append(principal, "subject.export", subject_id, "ok",
                      f"{'unmasked' if unmasked else 'masked'}; access receipt {receipt.receipt_id}")
    return SubjectExport(export, receipt)


def _person(principal: Principal, subject_id: str, data: ProtectedData, unmasked: bool) -> dict | None:
    if unmasked:  # audited, and refused (audited too) for a role without the unmasked right
        try:
            return data.reveal(principal, subject_id)
        except ApplianceError as exc:
            if exc.code is ErrorCode.SUBJECT_NOT_FOUND:
                return None
            raise
    try:
        person = data.identity.person(principal, subject_id)
    except ApplianceError as exc:
        if exc.code is ErrorCode.SUBJECT_NOT_FOUND:
            return None
        raise
    record = asdict(person)
    record["age_band"], record["alternative"] = person.age_band.value, person.alternative.value
    return mask_record(record)


def _consents(principal: Principal, subject_id: str, data: ProtectedData, unmasked: bool) -> list[dict]:
    out = []
    for c in data.identity.consents(principal, subject_id):
        record = {"scope": c.scope, "text_version": c.text_version, "reference": c.reference,
                  "consented_at": _iso(c.consented_at), "consented_by": c.consented_by, "by_guardian": c.by_guardian,
                  "withdrawn_at": None if c.withdrawn_at is None else _iso(c.withdrawn_at)}
        out.append(record if unmasked else mask_record(record))
    return out


def _devices(principal: Principal, subject_id: str, data: ProtectedData, sync: SyncStore, doors: dict[str, str],
             templates: list, tombstone, access: SiteAccess) -> list[dict]:
    """Doors holding the template, or for a person with none their card entry (acknowledged
    its revision and eligible, access groups included), doors that will (eligible, not yet
    synced), and, after a deletion, doors that have not confirmed it."""
    contacts = sync.device_contacts()
    face = bool(templates)
    revision = max((t.revision for t in templates), default=0) or data.identity.credential_revision(subject_id)
    profile = Profiles(data.identity, sync.groups, principal, access).get(subject_id, revision) if revision else None
    out = []
    for device, group in sorted(doors.items()):
        held = contacts[device].revision if device in contacts else 0
        if profile is not None and profile.allows(group, device, face):
            state = HOLDS if held >= revision else PENDING
        elif not templates and tombstone is not None and 0 < held < tombstone.revision:
            state = DELETING
        else:
            continue
        out.append({"device": device, "group": group, "state": state, "revision_held": held,
                    "acknowledged_at": _iso(contacts[device].acked_at) if device in contacts else None})
    return out


def _door_access(subject_id: str, doors: dict[str, str], access: SiteAccess, now: float) -> list[dict]:
    """Each door the access rules let the person open, and when (``eligibility.door_access``)."""
    out = []
    for door in sorted(doors):
        when = door_access(access, subject_id, door, now)
        if when is None:
            continue
        if "valid_from" in when:
            when = {**when, **{k: None if when[k] is None else _iso(when[k]) for k in ("valid_from", "valid_until")}}
        out.append({"door": door, "always": not when, **when})
    return out


def _event(event) -> dict:
    details = {k: event.details[k] for k in EVENT_DETAILS if k in event.details}
    return {"event_id": event.event_id, "device": event.device_id, "kind": event.kind, "outcome": event.outcome,
            "at": _iso(event.at), "received_at": _iso(event.received_at), **details}


def _receipt(principal: Principal, subject_id: str, data: ProtectedData, export: dict, now: float) -> AccessReceipt:
    counts = {"person": int(export["person"] is not None), "consents": len(export["consents"]),
              "templates": len(export["templates"]), "devices": len(export["devices"]),
              "door_access": len(export["door_access"]),
              "events": len(export["events"]["items"]), "deletion_receipts": len(export["deletion_receipts"])}
    receipt = AccessReceipt(uuid.uuid4().hex, subject_id, principal.actor, principal.role.value, _iso(now),
                            data.node.node_id, bool(export["masked"]), export_digest(export), counts)
    signed = AccessReceipt(**{**asdict(receipt), "signature": signing.sign_document(
        data.node.signing, RECEIPT_DOMAIN, receipt.document())})
    folder = data.root / ACCESS_RECEIPTS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(folder / f"{signed.receipt_id}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, RECEIPT_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(asdict(signed), indent=2, ensure_ascii=False) + "\n")
    return signed


def access_receipts(root: Path, public_key: Ed25519PublicKey) -> list[AccessReceipt]:
    """The access receipts this node signed (for the compliance report: requests answered)."""
    found = []
    for path in sorted((Path(root) / ACCESS_RECEIPTS_DIR).glob("*.json")):
        try:
            receipt = load_access_receipt(path)
        except (OSError, ValueError, TypeError):
            continue
        if receipt.verify(public_key):
            found.append(receipt)
    return found


def site_doors(pki) -> dict[str, str]:
    """Every active door of the site and its group (``ops.provisioning``), for ``doors``."""
    from appliance.ops import provisioning

    return {name: getattr(provisioning.policy(pki, name), "group", "default")
            for name, identity in sorted(pki.identities().items())
            if identity.role == "device" and not identity.revoked}


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat(timespec="seconds")
