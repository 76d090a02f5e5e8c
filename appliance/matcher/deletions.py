"""Deletion confirmations: which device dropped which deleted subject, and when.

A device acknowledges each revision it has committed (``sync_ack``, or the revision a
``sync_request`` says it holds); every tombstone at or below an acknowledged revision is
confirmed for that device at that time. ``report`` gives a deletion receipt with every
device's confirmation (``None``: not yet), signed by the node (``verify_report``);
``unconfirmed`` lists deletions some device has not confirmed, with their age - what
administrators watch (``appliance subject unconfirmed``).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.matcher.sync_store import SyncStore
from appliance.security import signing
from appliance.stores.deletion import load_receipt
from appliance.stores.protected import RECEIPTS_DIR, ProtectedData

REPORT_DOMAIN = b"appliance/deletion-confirmations/v1|"


class DeletionConfirmations:
    def __init__(self, data: ProtectedData, store: SyncStore, clock: Callable[[], float] = time.time):
        self.data, self.store, self.clock = data, store, clock
        self._lock = threading.Lock()

    def acknowledge(self, device: str, revision: int, now: float | None = None) -> None:
        """``device`` holds ``revision``, committed: the tombstones since its previous
        acknowledgement, up to ``revision``, are confirmed for it."""
        with self._lock:
            previous = self.store.device_revision(device)
            tombs = self.data.biometric.tombstones(after=previous, upto=revision) if revision > previous else []
            self.store.record_ack(device, revision, [(t.subject_id, t.revision) for t in tombs],
                                  self.clock() if now is None else now)

    def report(self, receipt_id: str, devices: list[str]) -> dict:
        """The deletion receipt with every device's confirmation (None = not yet), signed."""
        receipt = load_receipt(self.data.root / RECEIPTS_DIR / f"{receipt_id}.json")
        confirmed = self.store.confirmations(receipt.tombstone_revision)
        report = {"receipt": json.loads(receipt.to_json()),
                  "devices": {d: confirmed.get(d) for d in sorted(devices)},
                  "complete": all(d in confirmed for d in devices),
                  "reported_at": self.clock()}
        report["signature"] = signing.sign_document(self.data.node.signing, REPORT_DOMAIN, report)
        return report

    def unconfirmed(self, devices: list[str]) -> list[dict]:
        """Deletions some device has not confirmed yet (for administrators)."""
        out = []
        now = self.clock()
        for tomb in self.data.biometric.tombstones():
            confirmed = self.store.confirmations(tomb.revision)
            missing = sorted(d for d in devices if d not in confirmed)
            if missing:
                out.append({"subject_id": tomb.subject_id, "revision": tomb.revision, "deleted_at": tomb.deleted_at,
                            "age_s": round(now - tomb.deleted_at, 1), "missing": missing})
        return out


def verify_report(report: dict, public_key: Ed25519PublicKey) -> bool:
    """True only for a report exactly as the node signed it; never raises."""
    body = dict(report)
    signature = body.pop("signature", "")
    return signing.verify_document(public_key, REPORT_DOMAIN, body, signature)
