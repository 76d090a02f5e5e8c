"""The audit log's signed head and group commit: what the database key alone cannot hide, what
a crash cannot break, and that appends from many threads are batched yet durable.

The crash tests run a real writer process on real SQLCipher files and kill it (SIGKILL, or
``os._exit`` at a chosen point of the head protocol), then verify from a fresh process state.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli.main import main
from appliance.config import MIN_AUDIT_RETENTION_DAYS, load_config
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.keys import NODE_SIGNING
from appliance.security.roles import Principal, Role
from appliance.stores import audit_head
from appliance.stores.audit import SECONDS_PER_DAY, AuditLog, entry_hash
from appliance.stores.audit_head import AuditHead
from appliance.stores.base import CipherStore
from appliance.stores.protected import AUDIT_FILE, ProtectedData, key_provider
from auditkit import INSERT_ENTRY, tamper
from authkit import make_token

ENTRIES = 8
CHECKPOINT_EVERY = 5
THREADS = 8
PER_THREAD = 40
FIRE_AND_FORGET = 300
ACKS_BEFORE_KILL = 80
TIMEOUT_S = 60
CRASHED = 70  # exit status of a writer made to die at a chosen point
QUICK_AGE_S = 0.3  # a head allowed to be this old is re-signed every 0.1 s when idle


@pytest.fixture
def log(tmp_path, keys, principals):
    audit = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1", checkpoint_every=CHECKPOINT_EVERY)
    for i in range(ENTRIES):
        audit.append(principals[Role.OPERATOR], "verify", f"s-{i:02d}", "pass")
    yield audit
    audit.close()


def head_of(audit: AuditLog) -> AuditHead:
    return audit_head.read_head(audit.head_path)


def test_entries_appended_without_the_signing_key_are_caught(log, principals):
    last = log.entries()[-1]
    fields = {"seq": last.seq + 1, "time": last.time, "actor": "acct-x", "role": "operator", "action": "login",
              "object": "admin", "result": "ok", "device": "local", "detail": ""}
    tamper(log, (INSERT_ENTRY,
                 tuple(fields.values()) + (last.hash, entry_hash(fields, last.hash))))
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, ENTRIES + 1) and "not covered" in verdict.reason


def test_a_missing_unreadable_or_foreign_head_fails(log, principals):
    auditor, genuine = principals[Role.AUDITOR], head_of(log)
    log.head_path.unlink()
    assert "missing" in log.verify(auditor).reason
    log.head_path.write_text("{not json")
    assert "unreadable" in log.verify(auditor).reason
    audit_head.write_head(log.head_path, genuine.signed(Ed25519PrivateKey.generate()))  # not the node's key
    assert "signature invalid" in log.verify(auditor).reason


def test_a_deleted_database_does_not_get_a_new_genesis_head(log, principals, tmp_path, keys):
    log.close()
    (tmp_path / "audit.db").unlink()
    fresh = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1")
    verdict = fresh.verify(principals[Role.AUDITOR])
    fresh.close()
    assert (verdict.ok, verdict.first_bad) == (False, 1) and "removed" in verdict.reason


def test_a_rollback_to_an_older_signed_head_is_stale_and_is_not_extended(log, principals):
    auditor = principals[Role.AUDITOR]
    old_head = log.head_path.read_bytes()
    for i in range(4):
        log.append(principals[Role.OPERATOR], "verify", f"s-late-{i}", "fail")
    tamper(log, ("DELETE FROM entries WHERE seq > ?", (ENTRIES,)))
    log.head_path.write_bytes(old_head)  # a genuine head, saved earlier
    later = head_of(log).time + 2 * QUICK_AGE_S
    assert not log.verify(auditor, max_head_age_s=QUICK_AGE_S, now=later).ok  # what freshness is for
    log.append(principals[Role.OPERATOR], "verify", "s-next", "pass")  # the running writer notices
    assert "rolled back" in log.head_problem
    assert not log.verify(auditor).ok


def test_pruning_moves_the_signed_start_and_nothing_else_does(log, principals):
    admin, auditor = principals[Role.SYSTEM_ADMIN], principals[Role.AUDITOR]
    removed = log.prune(admin, retention_days=MIN_AUDIT_RETENTION_DAYS,
                        now=log.entries()[-1].time + (MIN_AUDIT_RETENTION_DAYS + 16) * SECONDS_PER_DAY)
    assert removed == CHECKPOINT_EVERY and head_of(log).log.base_seq == CHECKPOINT_EVERY
    assert log.entries()[-1].action == "audit.prune" and log.verify(auditor).ok
    tamper(log, ("DELETE FROM entries WHERE seq = ?", (CHECKPOINT_EVERY + 1,)))
    verdict = log.verify(auditor)
    assert (verdict.ok, verdict.first_bad) == (False, CHECKPOINT_EVERY + 1) and "prune" in verdict.reason


def test_an_idle_writer_keeps_its_head_fresh_but_never_over_a_tampered_log(tmp_path, keys, principals):
    path = tmp_path / "audit.db"
    audit = AuditLog.open_with(path, keys, "node-1", head_max_age_s=QUICK_AGE_S)
    attacker = AuditLog.open_with(path, keys, "node-1")  # the database key, on its own connection
    try:
        audit.append(principals[Role.OPERATOR], "verify", "s-01", "pass")
        signed = head_of(audit).time
        time.sleep(3 * QUICK_AGE_S)
        assert head_of(audit).time > signed  # re-signed while nothing was written
        tamper(attacker, ("DELETE FROM entries", ()))
        time.sleep(3 * QUICK_AGE_S)
        signed = head_of(audit).time
        time.sleep(3 * QUICK_AGE_S)
        assert head_of(audit).time == signed and "removed" in audit.head_problem  # not over a cut log
        assert head_of(audit).log.seq == 1 and not audit.verify(principals[Role.AUDITOR]).ok
    finally:
        attacker.close()
        audit.close()


def test_a_stale_head_puts_the_gap_on_record(tmp_path, keys, principals):
    path = tmp_path / "audit.db"
    AuditLog.open_with(path, keys, "node-1").close()
    time.sleep(2 * QUICK_AGE_S)  # nothing ran: the head grew old
    audit = AuditLog.open_with(path, keys, "node-1", head_max_age_s=QUICK_AGE_S)
    audit.append(principals[Role.OPERATOR], "verify", "s-01", "pass")
    actions = [(e.action, e.result) for e in audit.entries()]
    assert actions == [("audit.head", "stale"), ("verify", "pass")] and audit.verify(principals[Role.AUDITOR]).ok
    audit.close()


def test_reanchoring_is_deliberate_and_on_record(log, principals):
    tamper(log, ("DELETE FROM entries WHERE seq > 6", ()))
    with pytest.raises(ApplianceError):
        log.reanchor(principals[Role.OPERATOR])
    entry = log.reanchor(principals[Role.SYSTEM_ADMIN])
    assert entry.action == "audit.reanchor" and "entries after 6 removed" in entry.detail
    assert log.entries()[-1] == entry
    assert log.verify(principals[Role.AUDITOR]).ok


def test_a_log_from_before_signed_heads_fails_verify_until_reanchored(tmp_path, keys, principals):
    """Nothing in the database can tell an upgrade from a deleted head, so no head is signed
    over an old log by itself: an administrator re-anchors it once, on record."""
    class Schema1(CipherStore):  # the audit store as it was: entries and checkpoints, no head
        KEY_NAME, MIGRATIONS = AuditLog.KEY_NAME, AuditLog.MIGRATIONS[:1]

    old, prev = Schema1.open(tmp_path / "audit.db", keys), "0" * 64
    for seq in range(1, ENTRIES + 1):
        fields = {"seq": seq, "time": time.time(), "actor": "acct-op", "role": "operator", "action": "verify",
                  "object": f"s-{seq}", "result": "pass", "device": "local", "detail": ""}
        digest = entry_hash(fields, prev)
        old.execute(INSERT_ENTRY, (*fields.values(), prev, digest))
        prev = digest
    old.close()
    audit = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1")
    try:
        assert audit.schema_version == len(AuditLog.MIGRATIONS) and not audit.head_path.exists()
        audit.append(principals[Role.OPERATOR], "verify", "s-new", "pass")  # written, but not anchored
        assert "missing" in audit.head_problem and "missing" in audit.verify(principals[Role.AUDITOR]).reason
        assert audit.reanchor(principals[Role.SYSTEM_ADMIN]).detail.startswith("signed head missing")
        assert audit.verify(principals[Role.AUDITOR]).ok and audit.entries()[-1].seq == ENTRIES + 2
    finally:
        audit.close()


# -- group commit ----------------------------------------------------------------------

def test_concurrent_appenders_are_batched_and_every_acknowledged_entry_is_durable(tmp_path, keys, principals):
    audit = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1", checkpoint_every=CHECKPOINT_EVERY)
    acknowledged: list = []

    def appender(n: int) -> None:
        who = Principal(f"acct-{n}", Role.OPERATOR)
        for i in range(PER_THREAD):
            acknowledged.append(audit.append(who, "verify", f"s-{n}-{i}", "pass", wait=True))

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = dict(audit.writer.stats)
    other = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1")  # another connection, as another process
    stored = {(e.seq, e.hash) for e in other.entries()}
    assert {(e.seq, e.hash) for e in acknowledged} == stored and len(stored) == THREADS * PER_THREAD
    assert stats["batches"] < stats["entries"] and other.verify(principals[Role.AUDITOR]).ok
    other.close()
    audit.close()


def test_fire_and_forget_appends_are_grouped_and_written_on_close(tmp_path, keys, principals):
    audit = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1")
    for i in range(FIRE_AND_FORGET):
        assert audit.append(principals[Role.OPERATOR], "message.request", f"d-{i}", "rejected", wait=False) is None
    audit.close()
    assert audit.writer.stats["batches"] <= FIRE_AND_FORGET // 4
    reopened = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1")
    assert len(reopened.entries()) == FIRE_AND_FORGET and reopened.verify(principals[Role.AUDITOR]).ok
    reopened.close()


def test_two_writers_of_one_log_keep_one_head(tmp_path, keys, principals):
    """The matcher and a CLI command append to the same file: the head lock orders them."""
    first, second = (AuditLog.open_with(tmp_path / "audit.db", keys, "node-1") for _ in range(2))
    who = principals[Role.OPERATOR]
    threads = [threading.Thread(target=lambda log=log: [log.append(who, "verify", f"s-{i}", "pass")
                                                        for i in range(PER_THREAD)]) for log in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert first.verify(principals[Role.AUDITOR]).ok and len(first.entries()) == 2 * PER_THREAD
    assert not first.head_problem and not second.head_problem
    first.close()
    second.close()


# -- crashes ---------------------------------------------------------------------------

FLOOD = r"""
import sys, threading
from appliance.security.keys import FileKeyProvider
from appliance.security.roles import Principal, Role
from appliance.stores.audit import AuditLog
audit = AuditLog.open_with(sys.argv[1], FileKeyProvider(sys.argv[2]), "node-1", checkpoint_every=7)
out = threading.Lock()
def appender(n):
    who, i = Principal(f"acct-{n}", Role.OPERATOR), 0
    while True:
        i += 1
        audit.append(who, "message.request", f"d-{n}", "rejected", wait=False)  # the hot path
        entry = audit.append(who, "verify", f"s-{n}-{i}", "pass")  # acknowledged once durable
        with out:
            print(entry.seq, entry.hash, flush=True)
for n in range(4):
    threading.Thread(target=appender, args=(n,), daemon=True).start()
threading.Event().wait()
"""


def test_sigkill_mid_stream_loses_nothing_acknowledged_and_verify_tells_the_truth(tmp_path, keys, principals):
    path = tmp_path / "audit.db"
    writer = subprocess.Popen([sys.executable, "-c", FLOOD, str(path), str(tmp_path / "keys")],
                              stdout=subprocess.PIPE, text=True)
    acknowledged: list[tuple[int, str]] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(acknowledged) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            seq, digest = writer.stdout.readline().split()
            acknowledged.append((int(seq), digest))
        writer.send_signal(signal.SIGKILL)  # while more batches are on their way
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL and len(acknowledged) >= ACKS_BEFORE_KILL
    audit = AuditLog.open_with(path, keys, "node-1", checkpoint_every=7)
    try:
        assert set(acknowledged) <= {(e.seq, e.hash) for e in audit.entries()}
        assert audit.verify(principals[Role.AUDITOR]).ok
        tamper(audit, ("DELETE FROM entries WHERE seq >= ?", (max(acknowledged)[0] - 1,)))
        assert not audit.verify(principals[Role.AUDITOR]).ok
    finally:
        audit.close()


CRASH_BEFORE_HEAD = r"""
import os, sys
from appliance.security.keys import FileKeyProvider
from appliance.security.roles import Principal, Role
from appliance.stores import audit_head
from appliance.stores.audit import AuditLog
audit = AuditLog.open_with(sys.argv[1], FileKeyProvider(sys.argv[2]), "node-1")
who = Principal("acct-op", Role.OPERATOR)
for i in range(int(sys.argv[3])):
    audit.append(who, "verify", f"s-{i}", "pass")
def dying(path, head, durable_name=False):
    os._exit(int(sys.argv[4]))  # the group is committed; its head is never written
audit_head.write_head = dying
audit.append(who, "verify", "s-last", "pass")
"""


def test_a_crash_between_commit_and_head_leaves_a_log_that_verifies(tmp_path, keys, principals):
    path = tmp_path / "audit.db"
    done = subprocess.run([sys.executable, "-c", CRASH_BEFORE_HEAD, str(path), str(tmp_path / "keys"), str(ENTRIES),
                           str(CRASHED)], timeout=TIMEOUT_S)
    assert done.returncode == CRASHED
    audit = AuditLog.open_with(path, keys, "node-1")
    try:
        assert head_of(audit).log.seq == ENTRIES  # the head lags by the group the crash cut short...
        verdict = audit.verify(principals[Role.AUDITOR])
        assert verdict.ok and verdict.entries == ENTRIES + 1  # ...which the node signed in its commit
        audit.append(principals[Role.OPERATOR], "verify", "s-after", "pass")  # the head catches up
        assert head_of(audit).log.seq == ENTRIES + 2 and audit.verify(principals[Role.AUDITOR]).ok
        tamper(audit, ("DELETE FROM entries WHERE seq = ?", (ENTRIES + 2,)))
        assert not audit.verify(principals[Role.AUDITOR]).ok
    finally:
        audit.close()


def test_while_a_head_lags_only_the_unacknowledged_group_can_be_cut(tmp_path, keys, principals):
    """The bound of the crash window: the group whose head was never written was never
    acknowledged either; anything the head covers stays protected."""
    path = tmp_path / "audit.db"
    subprocess.run([sys.executable, "-c", CRASH_BEFORE_HEAD, str(path), str(tmp_path / "keys"), str(ENTRIES),
                    str(CRASHED)], timeout=TIMEOUT_S)
    audit = AuditLog(path, keys.get("audit-db"), keys.get(NODE_SIGNING), "node-1")
    try:
        tamper(audit, ("DELETE FROM entries WHERE seq = ?", (ENTRIES + 1,)), ("DELETE FROM tail", ()))
        assert audit.verify(principals[Role.AUDITOR]).ok
        tamper(audit, ("DELETE FROM entries WHERE seq = ?", (ENTRIES,)))
        verdict = audit.verify(principals[Role.AUDITOR])
        assert (verdict.ok, verdict.first_bad) == (False, ENTRIES)
    finally:
        audit.close()


# -- the command an operator runs ----------------------------------------------------------

def test_cli_verify_wants_a_fresh_head_unless_the_site_is_stopped_and_reanchor_is_recorded(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no 'appliance login' session here
    config_path = tmp_path / "appliance.toml"
    config_path.write_text('[security]\naudit_head_max_age_s = 60\n')
    assert main(["--config", str(config_path), "keys", "init"]) == 0
    tokens = {role: make_token(tmp_path / "data", role, config=load_config(config_path)) for role in Role}

    def as_role(role: Role) -> list[str]:  # the CLI acts as an account of this role (its API token)
        return ["--config", str(config_path), "--token", tokens[role]]

    with ProtectedData.from_config(load_config(config_path)) as data:
        for i in range(ENTRIES):
            data.audit.append(Principal("acct-op", Role.OPERATOR), "verify", f"s-{i}", "pass")
        old = head_of(data.audit)
    node_key = key_provider(load_config(config_path).security, tmp_path / "data").get(NODE_SIGNING)
    signer = Ed25519PrivateKey.from_private_bytes(node_key.material)
    stale = AuditHead(old.node, old.time - 3600, old.log).signed(signer)
    auditor = as_role(Role.AUDITOR)
    assert main([*auditor, "audit", "verify"]) == 0
    audit_head.write_head(tmp_path / "data" / (AUDIT_FILE + audit_head.HEAD_SUFFIX), stale)
    capsys.readouterr()
    assert main([*auditor, "audit", "verify"]) == ErrorCode.AUDIT_TAMPERED.exit_status
    assert "s old, allowed 60 s" in capsys.readouterr().err
    assert main([*auditor, "audit", "verify", "--stopped"]) == 0
    with ProtectedData.from_config(load_config(config_path)) as data:
        tamper(data.audit, ("DELETE FROM entries WHERE seq > 5", ()))
    assert main([*auditor, "audit", "verify", "--stopped"]) == ErrorCode.AUDIT_TAMPERED.exit_status
    assert main([*as_role(Role.SYSTEM_ADMIN), "audit", "reanchor"]) == 0
    auditor = as_role(Role.AUDITOR)
    assert main([*auditor, "audit", "verify"]) == 0
    exported = tmp_path / "export.json"
    assert main([*auditor, "audit", "export", "--out", str(exported)]) == 0
    assert [e["action"] for e in json.loads(exported.read_text())][-1] == "audit.reanchor"
