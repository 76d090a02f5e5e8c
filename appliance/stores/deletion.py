"""Deletion that really deletes, and the receipt that proves it.

Deleting a subject removes the identity record and consents, every template, and the
subject's data key (so template copies in backups become unreadable), leaves a tombstone with
a revision for the device caches, and yields a signed receipt naming what was deleted where
and when - with no personal data beyond the pseudonym.

A deletion that would erase nothing issues nothing: an id this node never held is
``SUBJECT_NOT_FOUND`` (no receipt, no tombstone, no revision), and a subject already erased
is ``SUBJECT_ALREADY_DELETED`` naming the first receipt - an empty second receipt would look
like proof of a deletion that did not happen then, and would bury the one that did.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.durable_file import SHARED, write_durably
from appliance.errors import ApplianceError, ErrorCode, PartlyDone, is_unwritable
from appliance.security import signing
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

    def document(self) -> dict:
        """What the signature covers: every field but the signature."""
        data = asdict(self)
        data.pop("signature")
        return data

    def signed(self, signer: Ed25519PrivateKey) -> DeletionReceipt:
        return replace(self, signature=signing.sign_document(signer, _RECEIPT_DOMAIN, self.document()))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """Never raises: a malformed or edited receipt is simply not valid."""
        return signing.verify_document(public_key, _RECEIPT_DOMAIN, self.document(), self.signature)


@dataclass
class SubjectAlreadyDeleted(ApplianceError):
    """``SUBJECT_ALREADY_DELETED`` with the first receipt's id ("" when none is on record), so
    the caller can hand back the proof that already exists."""

    receipt_id: str = ""


def check_erasable(principal: Principal, subject_id: str, identity: IdentityRegistry, biometric: BiometricStore,
                   vault: KeyVault, receipts_dir: Path, public_key: Ed25519PublicKey) -> None:
    """Refuse, before anything is written, an erasure that would find nothing to erase.

    Something left in any store (person record, template, data key) means a real deletion
    follows; nothing left and a tombstone means it happened already; nothing at all means
    this node never held the id. ``public_key`` checks receipts found in ``receipts_dir``."""
    if _holds_anything(principal, subject_id, identity, biometric, vault):
        return
    tombstone = biometric.tombstone(subject_id)
    if tombstone is None:
        raise ApplianceError(ErrorCode.SUBJECT_NOT_FOUND,
                             f"{subject_id}: no person, template, data key or deletion on record; nothing deleted")
    receipt_id = tombstone.receipt_id or _first_receipt_id(receipts_dir, subject_id, public_key)
    deleted_at = dt.datetime.fromtimestamp(tombstone.deleted_at, dt.timezone.utc).isoformat(timespec="seconds")
    if not receipt_id:
        proof = "no receipt on record"
    elif (receipts_dir / f"{receipt_id}.json").exists():
        proof = f"receipt {receipt_id} is the proof"
    else:
        proof = f"receipt {receipt_id} (its file is missing from {receipts_dir})"
    raise SubjectAlreadyDeleted(ErrorCode.SUBJECT_ALREADY_DELETED,
                                f"{subject_id} was deleted at {deleted_at} (revision {tombstone.revision}); "
                                f"{proof}; nothing deleted now", receipt_id)


def _holds_anything(principal: Principal, subject_id: str, identity: IdentityRegistry, biometric: BiometricStore,
                    vault: KeyVault) -> bool:
    if biometric.rows(subject_id) or vault.has_key(subject_id):
        return True
    try:
        identity.person(principal, subject_id)
    except ApplianceError as exc:
        if exc.code is not ErrorCode.SUBJECT_NOT_FOUND:
            raise
        return False
    return True


def _first_receipt_id(receipts_dir: Path, subject_id: str, public_key: Ed25519PublicKey) -> str:
    """The earliest signed receipt for the subject in the receipts folder: tombstones written
    before they named their receipt (older stores, or replayed by a restore) are looked up here."""
    found = [(receipt.deleted_at, receipt.receipt_id) for receipt in signed_receipts(receipts_dir, public_key)
             if receipt.subject_id == subject_id]
    return min(found)[1] if found else ""


def signed_receipts(receipts_dir: Path, public_key: Ed25519PublicKey) -> Iterator[DeletionReceipt]:
    """The receipts in ``receipts_dir`` signed with ``public_key``, in file-name order. Anything
    else there - unreadable, not a receipt, edited, signed by another key - proves nothing and
    is skipped: whoever can write the folder can neither forge a deletion nor stop a reader."""
    for path in sorted(Path(receipts_dir).glob("*.json")):
        try:
            receipt = load_receipt(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if receipt.verify(public_key):
            yield receipt


def receipt_time(receipt: DeletionReceipt) -> float:
    """When the deletion a receipt proves happened, Unix seconds."""
    return dt.datetime.fromisoformat(receipt.deleted_at).timestamp()


def prune_receipts(receipts_dir: Path, public_key: Ed25519PublicKey, before: float) -> int:
    """Remove the signed receipts of deletions before ``before`` (retention; the caller keeps
    them at least as long as the audit log that names them). Files that are not receipts
    signed by this node are left alone: they are not this node's to remove."""
    removed = 0
    for receipt in list(signed_receipts(receipts_dir, public_key)):
        if receipt_time(receipt) < before:
            (Path(receipts_dir) / f"{receipt.receipt_id}.json").unlink(missing_ok=True)
            removed += 1
    return removed


def oldest_receipt_time(receipts_dir: Path, public_key: Ed25519PublicKey) -> float | None:
    """When the oldest deletion with a kept receipt happened (None: no receipts)."""
    return min((receipt_time(r) for r in signed_receipts(receipts_dir, public_key)), default=None)


def erase_subject(principal: Principal, subject_id: str, reason: str, identity: IdentityRegistry | None,
                  biometric: BiometricStore, vault: KeyVault, signer: Ed25519PrivateKey, node: str,
                  receipts_dir: Path) -> DeletionReceipt:
    """Erase a subject everywhere this node holds it; ``identity`` None keeps the person
    record (template expiry by retention). The caller has checked why deletion is allowed,
    and that there is something to erase (``check_erasable``).

    The stores are separate files, so a disk that fills between two of them leaves part done.
    The order makes that part the safe one: the templates and their tombstone first (doors stop
    admitting the face at their next sync), the data key next, the person record last, so what
    is left is a record an operator still sees and deletes again - never a face that opens
    doors behind a person who is no longer listed. Such a failure is E213 saying what is done."""
    receipt_id = secrets.token_hex(RECEIPT_ID_BYTES)  # the tombstone names it
    done: list[str] = []
    persons = 0
    try:
        removed, revision = biometric.delete_subject(principal, subject_id, receipt_id)
        done.append("templates (tombstoned)")
        keys = vault.destroy(subject_id)
        done.append("data key")
        if identity is not None:
            persons = identity.delete_person(principal, subject_id)
            identity.checkpoint()
    except ApplianceError as exc:
        if done and is_unwritable(exc):
            raise PartlyDone(ErrorCode.STORE_UNWRITABLE, f"the erasure of {subject_id} is not complete: "
                             f"{' and '.join(done)} erased, not the rest; delete it again once there is room "
                             f"({exc.detail})") from exc
        raise
    items = [DeletedItem("identity", "person record and consent records", persons)] if identity is not None else []
    items += [DeletedItem("biometric", "templates", removed), DeletedItem("keyvault", "per-subject data key", keys)]
    receipt = DeletionReceipt(
        receipt_id=receipt_id, subject_id=subject_id, reason=reason,
        deleted_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), node=node,
        actor=principal.actor, items=tuple(items), tombstone_revision=revision)
    receipt = receipt.signed(signer)
    receipts_dir.mkdir(parents=True, exist_ok=True)
    # whole or not at all: a receipt cut by a power loss would be unreadable proof
    write_durably(receipts_dir / f"{receipt.receipt_id}.json", (receipt.to_json() + "\n").encode("utf-8"), SHARED)
    return receipt


def load_receipt(path: Path) -> DeletionReceipt:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    data["items"] = tuple(DeletedItem(**item) for item in data["items"])
    return DeletionReceipt(**data)
