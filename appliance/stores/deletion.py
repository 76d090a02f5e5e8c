"""Deletion that really deletes, and the receipt that proves it.

Deleting a subject removes the identity record and consents, every template, and the
subject's data key (so template copies in backups become unreadable), leaves a tombstone with
a revision for the device caches, and yields a signed receipt naming what was deleted where
and when - with no personal data beyond the pseudonym.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.security.roles import Principal
from appliance.stores.biometric import BiometricStore
from appliance.stores.identity import IdentityRegistry
from appliance.stores.keyvault import KeyVault

RECEIPT_ID_BYTES = 8
_RECEIPT_DOMAIN = b"appliance/deletion-receipt/v1|"


@dataclass(frozen=True)
class DeletedItem:
    store: str
    what: str
    rows: int


@dataclass(frozen=True)
class DeletionReceipt:
    receipt_id: str
    subject_id: str
    reason: str  # "request", "consent withdrawn", "retention"
    deleted_at: str  # ISO 8601 UTC
    node: str
    actor: str
    items: tuple[DeletedItem, ...]
    tombstone_revision: int
    signature: str = ""

    def body(self) -> bytes:
        data = asdict(self)
        data.pop("signature")
        return _RECEIPT_DOMAIN + json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(bytes.fromhex(self.signature), self.body())
            return True
        except Exception:  # noqa: BLE001 - any failure means "not a valid receipt"
            return False


def erase_subject(principal: Principal, subject_id: str, reason: str, identity: IdentityRegistry | None,
                  biometric: BiometricStore, vault: KeyVault, signer: Ed25519PrivateKey, node: str,
                  receipts_dir: Path) -> DeletionReceipt:
    """Erase a subject everywhere this node holds it; ``identity`` None keeps the person
    record (template expiry by retention). The caller has checked why deletion is allowed."""
    items = []
    if identity is not None:
        items.append(DeletedItem("identity", "person record and consent records",
                                 identity.delete_person(principal, subject_id)))
        identity.checkpoint()
    removed, revision = biometric.delete_subject(principal, subject_id)
    items.append(DeletedItem("biometric", "templates", removed))
    items.append(DeletedItem("keyvault", "per-subject data key", vault.destroy(subject_id)))
    receipt = DeletionReceipt(
        receipt_id=secrets.token_hex(RECEIPT_ID_BYTES), subject_id=subject_id, reason=reason,
        deleted_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), node=node,
        actor=principal.actor, items=tuple(items), tombstone_revision=revision)
    receipt = DeletionReceipt(**{**asdict(receipt), "items": receipt.items,
                                 "signature": signer.sign(receipt.body()).hex()})
    receipts_dir.mkdir(parents=True, exist_ok=True)
    (receipts_dir / f"{receipt.receipt_id}.json").write_text(receipt.to_json() + "\n", encoding="utf-8")
    return receipt


def load_receipt(path: Path) -> DeletionReceipt:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    data["items"] = tuple(DeletedItem(**item) for item in data["items"])
    return DeletionReceipt(**data)
