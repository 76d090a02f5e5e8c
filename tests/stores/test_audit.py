"""The audit chain: every kind of tampering is caught and the first bad entry named."""
from __future__ import annotations

import random
import string

import pytest

from appliance.config import MIN_AUDIT_RETENTION_DAYS
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.roles import Role
from appliance.stores.audit import SECONDS_PER_DAY, AuditLog, entry_hash
from appliance.stores.audit_chain import FORBIDDEN, FORBIDDEN_WORDS, forbidden
from auditkit import INSERT_ENTRY, tamper

ENTRIES = 12
CHECKPOINT_EVERY = 5


@pytest.fixture
def log(tmp_path, keys, principals):
    audit = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1", checkpoint_every=CHECKPOINT_EVERY)
    for i in range(ENTRIES):
        audit.append(principals[Role.OPERATOR], "verify", f"s-{i:02d}", "pass" if i % 2 else "fail")
    yield audit
    audit.close()


def test_untouched_log_verifies(log, principals):
    verdict = log.verify(principals[Role.AUDITOR])
    assert verdict.ok and verdict.entries == ENTRIES


def test_modified_entry_is_named(log, principals):
    tamper(log, ("UPDATE entries SET result = 'pass' WHERE seq = 7", ()))
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 7) and "modified" in verdict.reason


def test_deleted_entry_is_named(log, principals):
    tamper(log, ("DELETE FROM entries WHERE seq = 8", ()))
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 8) and "missing" in verdict.reason


def test_inserted_entry_is_named(log, principals):
    row = log.execute("SELECT * FROM entries WHERE seq = 3").fetchone()
    shifted = [("UPDATE entries SET seq = seq + 1 WHERE seq = ?", (s,)) for s in range(ENTRIES, 3, -1)]
    forged = list(row[:11])  # the columns every entry has
    forged[0], forged[6] = 4, "pass"  # a made-up entry slipped in after entry 3
    tamper(log, *shifted, (INSERT_ENTRY, tuple(forged)))
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 4)


def test_inserted_entry_with_a_recomputed_hash_is_still_caught(log, principals):
    prev = log.execute("SELECT hash FROM entries WHERE seq = 3").fetchone()[0]
    fields = {"seq": 4, "time": 1.0, "actor": "x", "role": "operator", "action": "verify", "object": "s-99",
              "result": "pass", "device": "local", "detail": ""}
    shifted = [("UPDATE entries SET seq = seq + 1 WHERE seq = ?", (s,)) for s in range(ENTRIES, 3, -1)]
    values = tuple(fields.values()) + (prev, entry_hash(fields, prev))
    tamper(log, *shifted, (INSERT_ENTRY, values))
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 5)  # the entry after the forgery no longer chains


def test_reordered_entries_are_named(log, principals):
    a = log.execute("SELECT * FROM entries WHERE seq = 9").fetchone()
    b = log.execute("SELECT * FROM entries WHERE seq = 10").fetchone()
    columns = ("time = ?, actor = ?, role = ?, action = ?, object = ?, result = ?, device = ?, detail = ?, "
               "prev = ?, hash = ?")
    tamper(log, (f"UPDATE entries SET {columns} WHERE seq = 9", tuple(b[1:11])),
           (f"UPDATE entries SET {columns} WHERE seq = 10", tuple(a[1:11])))
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 9)


def test_removed_tail_is_caught_by_the_signed_checkpoint(log, principals):
    tamper(log, ("DELETE FROM entries WHERE seq > 7", ()))  # a checkpoint was signed at 10
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 8) and "removed" in verdict.reason


def test_rewritten_chain_fails_against_the_signed_checkpoint(log, principals):
    """With the database key but not the node's signing key, history cannot be rewritten."""
    rows = log.execute("SELECT * FROM entries ORDER BY seq").fetchall()
    statements, prev = [("DELETE FROM entries", ())], "0" * 64
    for row in rows:
        fields = dict(zip(("seq", "time", "actor", "role", "action", "object", "result", "device", "detail"), row[:9]))
        if fields["seq"] == 2:
            fields["result"] = "tampered"
        digest = entry_hash(fields, prev)
        statements.append((INSERT_ENTRY,
                           tuple(fields.values()) + (prev, digest)))
        prev = digest
    tamper(log, *statements)
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 5) and "signed checkpoint" in verdict.reason


def test_guards_refuse_edits_and_deletes_through_sql(log):
    for sql in ("UPDATE entries SET result = 'x' WHERE seq = 1", "DELETE FROM entries WHERE seq = 1",
                "DELETE FROM checkpoints"):
        with pytest.raises(Exception, match="append-only|retention"):
            log.execute(sql)


def test_scores_and_biometric_data_are_refused(log, principals):
    for detail in ("similarity 0.8312", "score=0.91", "vector [0.1, ...]", "raw image"):
        with pytest.raises(ApplianceError) as info:
            log.append(principals[Role.OPERATOR], "verify", "s-01", "pass", detail)
        assert info.value.code is ErrorCode.AUDIT_FORBIDDEN_DATA


def test_pruning_keeps_the_rest_verifiable_and_respects_the_minimum(log, principals):
    admin = principals[Role.SYSTEM_ADMIN]
    with pytest.raises(ApplianceError):
        log.prune(admin, retention_days=30)
    now = log.entries()[-1].time + (MIN_AUDIT_RETENTION_DAYS + 16) * SECONDS_PER_DAY
    with pytest.raises(ApplianceError):  # six months was the old minimum: three years now (PIPL art. 56)
        log.prune(admin, retention_days=184, now=now)
    removed = log.prune(admin, retention_days=MIN_AUDIT_RETENTION_DAYS, now=now)
    assert removed == 10  # up to the last signed checkpoint, not beyond it
    assert log.entries()[0].seq == 11
    assert log.verify(principals[Role.AUDITOR]).ok


def test_only_the_auditor_exports_and_nobody_erases(log, principals):
    with pytest.raises(ApplianceError):
        log.export(principals[Role.SECURITY_ADMIN])
    exported = log.export(principals[Role.AUDITOR], since=0)
    assert len(exported) == ENTRIES and log.entries()[-1].action == "audit.export"
    for role in Role:  # no role may prune below the legal minimum; only retention prunes at all
        if role is not Role.SYSTEM_ADMIN:
            with pytest.raises(ApplianceError):
                log.prune(principals[role], retention_days=MIN_AUDIT_RETENTION_DAYS)


# -- finding 1: what the database key alone must not be able to do ------------------------
# Each attack below uses only the audit database key (SQL through the store's connection, the
# guards dropped); the node's signing key stays out of reach. Before the signed head they all
# verified "ok".

def tamper_checkpoints(audit: AuditLog, *statements: tuple[str, tuple]) -> None:
    """The attacker also drops the checkpoints' guards."""
    audit.conn.executescript("DROP TRIGGER IF EXISTS checkpoints_append_only;"
                             "DROP TRIGGER IF EXISTS checkpoints_no_delete;")
    tamper(audit, *statements)


def rewrite_chain(audit: AuditLog, change: dict[int, dict]) -> None:
    """Recompute every hash from genesis with some fields changed (what the DB key allows)."""
    rows = audit.execute("SELECT * FROM entries ORDER BY seq").fetchall()
    statements, prev = [("DELETE FROM entries", ())], "0" * 64
    for row in rows:
        fields = dict(zip(FIELD_NAMES, row[:len(FIELD_NAMES)])) | change.get(row[0], {})
        digest = entry_hash(fields, prev)
        statements.append((INSERT_ENTRY,
                           tuple(fields.values()) + (prev, digest)))
        prev = digest
    tamper(audit, *statements)


FIELD_NAMES = ("seq", "time", "actor", "role", "action", "object", "result", "device", "detail")


def test_cut_tail_after_the_last_checkpoint_is_caught(log, principals):
    tamper(log, ("DELETE FROM entries WHERE seq > 10", ()))  # the last checkpoint is at 10
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 11) and "removed" in verdict.reason


def test_cut_tail_of_a_log_without_any_checkpoint_is_caught(tmp_path, keys, principals):
    """The demo's log: fewer entries than one checkpoint interval."""
    audit = AuditLog.open_with(tmp_path / "demo.db", keys, "node-1")  # checkpoints every 100
    for i in range(ENTRIES):
        audit.append(principals[Role.OPERATOR], "verify", f"s-{i:02d}", "pass")
    tamper(audit, ("DELETE FROM entries WHERE seq > 9", ()))
    verdict = audit.verify(principals[Role.AUDITOR])
    audit.close()
    assert (verdict.ok, verdict.first_bad) == (False, 10) and "removed" in verdict.reason


def test_deleting_the_last_checkpoint_and_the_entries_after_it_is_caught(log, principals):
    tamper_checkpoints(log, ("DELETE FROM checkpoints WHERE seq = 10", ()),
                       ("DELETE FROM entries WHERE seq > 5", ()))
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 6) and "removed" in verdict.reason


def test_rewriting_the_whole_chain_without_checkpoints_is_caught(log, principals):
    tamper_checkpoints(log, ("DELETE FROM checkpoints", ()))
    rewrite_chain(log, {2: {"result": "tampered"}})
    verdict = log.verify(principals[Role.AUDITOR])
    assert not verdict.ok and "rewritten" in verdict.reason


def test_deleting_up_to_a_checkpoint_is_not_pruning_without_a_signed_prune_record(log, principals):
    tamper_checkpoints(log, ("DELETE FROM entries WHERE seq <= 5", ()), ("DELETE FROM checkpoints WHERE seq < 5", ()))
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 1) and "prune" in verdict.reason


def test_a_group_of_fire_and_forget_entries_is_chained_and_checkpointed_as_one_at_a_time_would_be(
        tmp_path, keys, principals):
    audit = AuditLog.open_with(tmp_path / "grouped.db", keys, "node-1", checkpoint_every=CHECKPOINT_EVERY)
    try:
        for i in range(3 * CHECKPOINT_EVERY + 2):  # one group (inserted together) across three checkpoints
            audit.append(principals[Role.OPERATOR], "verify", f"s-{i:02d}", "pass", wait=False)
        entries = audit.entries()
        assert [e.seq for e in entries] == list(range(1, 3 * CHECKPOINT_EVERY + 3))
        assert all(entry_hash(e.as_dict(), e.prev) == e.hash for e in entries)
        signed = [row[0] for row in audit.execute("SELECT seq FROM checkpoints ORDER BY seq")]
        assert signed == [CHECKPOINT_EVERY, 2 * CHECKPOINT_EVERY, 3 * CHECKPOINT_EVERY]
        assert audit.verify(principals[Role.AUDITOR]).ok
    finally:
        audit.close()


@pytest.mark.parametrize("text", [
    "match; request 3f2a9c0d1e2b4a5f8c7d6e5f4a3b2c1d", "s-abbef5fa05d1ee94058277a9f4d84568", "decision.identify", "",
    "SCORE 1", "a 0.8123 b", "x1.2345", "0.12", "Threshold", "vectors", "similarity", "dist ance", "imagE",
    "\u017fcore",  # a long s: the pattern's case folding makes it "score"
    "\u212aelvin \u0130MAGE",  # a Kelvin sign, a dotted capital I
    "0\u0665.\u0661\u0662\u0663",  # Arabic-Indic digits around an ASCII point
])
def test_the_fast_check_of_forbidden_words_answers_as_the_pattern_does(text):
    assert forbidden(text) is (FORBIDDEN.search(text) is not None)


def test_the_fast_check_agrees_with_the_pattern_on_random_text():
    rng = random.Random(17)
    alphabet = string.ascii_letters + string.digits + " .;-_:|" + "\u017f\u212a\u0130\u00df\u0665"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        if rng.random() < 0.3:  # a forbidden word in mixed case somewhere inside
            word = "".join(c.upper() if rng.random() < 0.5 else c for c in rng.choice(FORBIDDEN_WORDS))
            cut = rng.randint(0, len(text))
            text = text[:cut] + word + text[cut:]
        assert forbidden(text) is (FORBIDDEN.search(text) is not None), text
