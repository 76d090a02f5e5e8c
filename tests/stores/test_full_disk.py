"""A full disk under the stores: the matcher's audit entries wait in memory and none is lost,
even when it is stopped before room is made (the audit log's reserve);
a door's outbox refuses an event whole (the door then says "unavailable" instead of letting
someone through unrecorded) and takes events again once there is room.

The stores live on a real, small tmpfs filled to the last byte (mounting one needs root, as CI
runs; elsewhere the tests are skipped with that reason). SQLite meets the full disk in its own
write path ("database or disk is full"), exactly as on a door's or matcher's SD card."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from appliance.config import SecurityConfig
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops.health import FAIL, OK, Check, check_daemon
from appliance.ops.notify import Watchdog
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.roles import Principal, Role
from appliance.edge.offline import OUTBOX_FILE
from appliance.security.keys import OUTBOX_DB, ensure_keys
from appliance.stores.audit import AuditLog
from appliance.stores.device import Outbox
from appliance.stores.protected import BIOMETRIC_FILE, IDENTITY_FILE, KEYVAULT_FILE, ProtectedData
from appliance.vision.templates import Template, normalise
from diskkit import fill, small_disk
from polling import wait_for

BEFORE, DURING = 5, 300  # entries written before the disk fills, appended while it is full
TIMEOUT_S = 30.0
MAX_EVENTS = 100_000
EVENTS_TO_FILL = 1000  # of 24 KiB: more than the 8 MiB disk holds
RESERVE_BYTES = 1024 * 1024  # the audit log's room for a stop on the full disk (8 MiB disk)


@pytest.fixture
def disk(tmp_path) -> Path:
    with small_disk(tmp_path / "disk") as folder:
        yield folder


def audit_check(audit: AuditLog, folder: Path) -> Check:
    """The audit check of a matcher heartbeat carrying ``audit``'s writer state."""
    status_file = folder / "matcher-matcher-1.json"
    Watchdog(environ={}, status_file=status_file).heartbeat(model_loaded=True, model="w600k-mbf@1.0.0", broker=True,
                                                            audit=audit.writer.state())
    return {check.name: check for check in check_daemon("matcher matcher-1", status_file, 60.0)}["audit"]


def test_matcher_entries_wait_out_a_full_disk_and_the_chain_verifies(disk, keys, principals, quick_retries,
                                                                     tmp_path):
    audit = AuditLog.open_with(disk / "audit.db", keys, "matcher-1")
    door = Principal("matcher-1", Role.OPERATOR, device="door-a")  # as the replica records a decision
    try:
        for n in range(BEFORE):
            audit.append(door, "decision.verify", f"s-{n}", "pass")
        filler = fill(disk)
        for n in range(DURING):  # the matcher's hot path: it does not wait for the disk
            audit.append(door, "decision.identify", f"s-{BEFORE + n}", "pass", wait=False)
        assert wait_for(lambda: audit.writer.failure is not None, TIMEOUT_S)
        assert "full" in audit.writer.failure.error, audit.writer.failure
        with pytest.raises(ApplianceError) as refused:  # a caller that waits is told at once
            audit.append(principals[Role.OPERATOR], "subject.delete", "s-x", "ok")
        assert refused.value.code is ErrorCode.STORE_UNWRITABLE and "full" in refused.value.detail
        failing = audit_check(audit, tmp_path)  # what `appliance health` shows from the heartbeat
        assert failing.status == FAIL and "audit log not written" in failing.detail and "full" in failing.detail
        filler.unlink()  # the administrator made room
        assert wait_for(lambda: audit.writer.failure is None and audit.writer.depth == 0, TIMEOUT_S)
        assert audit_check(audit, tmp_path).status == OK
        stats = dict(audit.writer.stats)
    finally:
        audit.close()
    assert stats.get("lost_unacknowledged", 0) == 0 and stats["failed_batches"] >= 1
    reopened = AuditLog.open_with(disk / "audit.db", keys, "matcher-1")
    try:
        objects = [entry.object for entry in reopened.entries() if entry.action.startswith("decision.")]
        assert objects == [f"s-{n}" for n in range(BEFORE + DURING)]  # every one, once, in order
        assert reopened.verify(principals[Role.AUDITOR]).ok
    finally:
        reopened.close()


def test_a_matcher_stopped_on_the_full_disk_writes_its_waiting_entries_into_the_reserves_room(
        disk, keys, principals, quick_retries):
    """Stopped before room was made, the matcher would lose the entries waiting in memory; the
    room its audit log kept (``stores.reserve``) is deleted for them instead, and made again at
    the next start once there is room."""
    audit = AuditLog.open_with(disk / "audit.db", keys, "matcher-1", reserve_bytes=RESERVE_BYTES)
    door = Principal("matcher-1", Role.OPERATOR, device="door-a")
    try:
        assert audit.reserve.ensure()  # as the matcher makes it (``matcher.app.compose``)
        for n in range(BEFORE):
            audit.append(door, "decision.verify", f"s-{n}", "pass")
        filler = fill(disk)
        for n in range(DURING):
            audit.append(door, "decision.identify", f"s-{BEFORE + n}", "pass", wait=False)
        assert wait_for(lambda: audit.writer.failure is not None, TIMEOUT_S)
    finally:
        audit.close()  # stopped while the disk is full
    assert audit.writer.stats.get("lost_unacknowledged", 0) == 0 and not audit.reserve.path.exists()
    filler.unlink()
    reopened = AuditLog.open_with(disk / "audit.db", keys, "matcher-1", reserve_bytes=RESERVE_BYTES)
    try:
        objects = [entry.object for entry in reopened.entries() if entry.action.startswith("decision.")]
        assert objects == [f"s-{n}" for n in range(BEFORE + DURING)]  # every one, once, in order
        assert reopened.verify(principals[Role.AUDITOR]).ok
        assert reopened.reserve.ensure()  # room kept again
    finally:
        reopened.close()


def test_a_door_outbox_refuses_an_event_whole_on_a_full_disk_then_takes_the_next(disk, keys):
    """``OutboxPump.submit`` commits each event before the door acts on its decision: refused
    with STORE_UNWRITABLE, a local grant becomes "unavailable" at the door (``door_pass``,
    ``credential_pass`` turn an ApplianceError into that), never a pass the centre never hears of."""
    ensure_keys(keys, (OUTBOX_DB,))
    outbox = Outbox.open(disk / OUTBOX_FILE, keys)
    try:
        outbox.put("event", "e-0", b"sealed-0" * 64, MAX_EVENTS)
        filler = fill(disk)
        with pytest.raises(ApplianceError) as refused:
            for n in range(1, EVENTS_TO_FILL):  # the first pages may still fit
                outbox.put("event", f"e-{n}", b"sealed" * 4096, MAX_EVENTS)
        assert refused.value.code is ErrorCode.STORE_UNWRITABLE
        assert OUTBOX_FILE in refused.value.detail and "full" in refused.value.detail
        stored = outbox.depth()
        assert [ref for _, _, ref, _ in outbox.next_after(0, EVENTS_TO_FILL)] == [f"e-{n}" for n in range(stored)]
        filler.unlink()
        outbox.put("event", "after", b"sealed-after", MAX_EVENTS)  # the same connection writes again
        assert outbox.depth() == stored + 1
    finally:
        outbox.close()


@pytest.mark.parametrize("store", [BIOMETRIC_FILE, KEYVAULT_FILE, IDENTITY_FILE])
def test_an_erasure_cut_by_a_full_disk_never_leaves_a_face_behind_an_unlisted_person(tmp_path, keys, principals,
                                                                                      store):
    """One store on a disk of its own that fills (the others have room). Whichever it is, the
    erasure stops with E213 and what it leaves is safe: the templates and their tombstone go
    first (the face no longer opens a door) and the person record last, so a person who is no
    longer listed never has a face left; E213 says what is done; deleting again finishes it."""
    node = tmp_path / "node"
    data = ProtectedData(node, keys, SecurityConfig())
    operator, security_admin = principals[Role.OPERATOR], principals[Role.SECURITY_ADMIN]
    subject = new_subject_id()
    data.register_person(operator, Person(subject, "张三", AgeBand.ADULT, Alternative.CARD))
    data.record_consent(operator, ConsentRecord(subject, ENROLL_SCOPE, "v3", time.time(), "张三"))
    data.enroll(operator, subject, Template(normalise(np.random.default_rng(1).normal(size=512)), "w600k-mbf", "1.0"),
                np.array([0.9], np.float32))
    data.close()
    with small_disk(tmp_path / "store-disk") as disk:  # SQLite follows the link: its WAL is there too
        shutil.move(node / store, disk / store)
        (node / store).symlink_to(disk / store)
        data = ProtectedData(node, keys, SecurityConfig())
        try:
            filler = fill(disk)
            with pytest.raises(ApplianceError) as cut:
                data.delete_subject(security_admin, subject)
            assert cut.value.code is ErrorCode.STORE_UNWRITABLE
            face_left = bool(data.biometric.rows(subject))
            listed = data.identity.person(security_admin, subject).subject_id == subject  # raises if not listed
            assert listed and face_left == (store == BIOMETRIC_FILE)
            if store == IDENTITY_FILE:
                assert not data.vault.has_key(subject) and data.biometric.tombstone(subject) is not None
                assert (f"the erasure of {subject} is not complete: templates (tombstoned) and data key erased"
                        in cut.value.detail)
            filler.unlink()
            receipt = data.delete_subject(security_admin, subject)  # again, once there is room
            with pytest.raises(ApplianceError) as gone:
                data.identity.person(security_admin, subject)
            assert gone.value.code is ErrorCode.SUBJECT_NOT_FOUND
            assert data.biometric.rows(subject) == [] and not data.vault.has_key(subject)
            assert data.biometric.tombstone(subject).receipt_id == receipt.receipt_id
        finally:
            data.close()
