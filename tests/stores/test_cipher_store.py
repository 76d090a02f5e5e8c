"""SQLCipher base: wrong keys and plain SQLite fail clearly; schema, WAL, backup, restore, rekey."""
from __future__ import annotations

import sqlite3

import pytest
from sqlcipher3 import dbapi2

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.keys import OUTBOX_DB, generate_key
from appliance.stores.device import Outbox


def filled_outbox(tmp_path, keys, n: int = 5) -> Outbox:
    outbox = Outbox.open(tmp_path / "outbox.db", keys)
    for i in range(n):
        outbox.enqueue("event", b"sealed-%d" % i)
    return outbox


def test_wrong_key_gives_a_clear_error(tmp_path, keys):
    filled_outbox(tmp_path, keys).close()
    with pytest.raises(ApplianceError) as info:
        Outbox(tmp_path / "outbox.db", generate_key(OUTBOX_DB))
    assert info.value.code is ErrorCode.STORE_UNREADABLE and "wrong key" in str(info.value)


def test_plain_sqlite_cannot_read_a_store_and_a_store_refuses_plain_sqlite(tmp_path, keys):
    filled_outbox(tmp_path, keys).close()
    raw = (tmp_path / "outbox.db").read_bytes()
    assert not raw.startswith(b"SQLite format 3") and b"sealed-1" not in raw
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        sqlite3.connect(tmp_path / "outbox.db").execute("SELECT * FROM sqlite_master").fetchall()
    plain = sqlite3.connect(tmp_path / "plain.db")
    plain.execute("CREATE TABLE t (x)")
    plain.commit()
    plain.close()
    with pytest.raises(ApplianceError) as info:
        Outbox.open(tmp_path / "plain.db", keys)
    assert info.value.code is ErrorCode.STORE_UNREADABLE


def test_the_sqlcipher_error_class_is_not_sqlite3s():
    # why the base maps it: callers catching sqlite3.DatabaseError would miss a wrong key
    assert not issubclass(dbapi2.DatabaseError, sqlite3.DatabaseError)


def test_schema_version_wal_and_newer_schema(tmp_path, keys):
    outbox = filled_outbox(tmp_path, keys)
    assert outbox.schema_version == len(Outbox.MIGRATIONS)
    assert outbox.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    outbox.execute(f"PRAGMA user_version = {len(Outbox.MIGRATIONS) + 1}")
    outbox.close()
    with pytest.raises(ApplianceError) as info:
        Outbox.open(tmp_path / "outbox.db", keys)
    assert info.value.code is ErrorCode.STORE_SCHEMA


def test_a_new_migration_is_applied_once(tmp_path, keys):
    filled_outbox(tmp_path, keys).close()

    class OutboxV2(Outbox):
        MIGRATIONS = (*Outbox.MIGRATIONS, "ALTER TABLE events ADD COLUMN topic TEXT;")

    store = OutboxV2.open(tmp_path / "outbox.db", keys)
    assert store.schema_version == len(Outbox.MIGRATIONS) + 1 and len(store.pending()) == 5
    store.close()
    assert OutboxV2.open(tmp_path / "outbox.db", keys).schema_version == len(Outbox.MIGRATIONS) + 1


def test_backup_and_restore(tmp_path, keys):
    outbox = filled_outbox(tmp_path, keys)
    backup = outbox.backup(tmp_path / "backup" / "outbox.db")
    outbox.enqueue("event", b"after")
    outbox.restore(backup)
    assert [e.payload for e in outbox.pending()] == [b"sealed-%d" % i for i in range(5)]
    assert outbox.integrity_problems() == []
    with pytest.raises(ApplianceError) as info:  # a backup must open with the store's key
        foreign = Outbox(tmp_path / "foreign.db", generate_key(OUTBOX_DB))
        foreign.close()
        outbox.restore(tmp_path / "foreign.db")
    assert info.value.code is ErrorCode.STORE_UNREADABLE
    outbox.close()


def test_integrity_check_finds_a_damaged_page(tmp_path, keys):
    outbox = filled_outbox(tmp_path, keys, n=200)
    outbox.checkpoint()
    outbox.close()
    path = tmp_path / "outbox.db"
    data = bytearray(path.read_bytes())
    data[4096 + 100] ^= 0xFF  # inside page 2
    path.write_bytes(bytes(data))
    store = Outbox.open(path, keys)
    assert any("HMAC" in p for p in store.integrity_problems())
    with pytest.raises(ApplianceError) as info:
        store.check_integrity()
    assert info.value.code is ErrorCode.STORE_CORRUPT


def test_rekey_switches_keys(tmp_path, keys):
    outbox = filled_outbox(tmp_path, keys)
    old = keys.get(OUTBOX_DB)
    new = outbox.rekey(keys)
    outbox.close()
    assert keys.get(OUTBOX_DB) == new != old and keys.staged(OUTBOX_DB) is None
    with pytest.raises(ApplianceError):
        Outbox(tmp_path / "outbox.db", old)
    store = Outbox.open(tmp_path / "outbox.db", keys)
    assert len(store.pending()) == 5 and store.integrity_problems() == []


def test_a_rekey_interrupted_before_the_key_file_switch_recovers(tmp_path, keys):
    filled_outbox(tmp_path, keys).close()
    new = generate_key(OUTBOX_DB)
    keys.stage(new)
    conn = dbapi2.connect(str(tmp_path / "outbox.db"))
    conn.execute(f"PRAGMA key = {keys.get(OUTBOX_DB).sqlcipher_pragma_value()}")
    conn.execute("PRAGMA journal_mode = DELETE").fetchall()
    conn.execute(f"PRAGMA rekey = {new.sqlcipher_pragma_value()}")
    conn.close()  # "crash" here: the file has the new key, the key file still the old one
    store = Outbox.open(tmp_path / "outbox.db", keys)
    assert len(store.pending()) == 5 and keys.get(OUTBOX_DB) == new


def test_every_store_kind_recovers_an_interrupted_rekey(tmp_path, keys):
    from appliance.stores.audit import AuditLog
    from appliance.security.keys import AUDIT_DB, KEYVAULT_DB
    from appliance.stores.keyvault import KeyVault

    openers = {AUDIT_DB: lambda: AuditLog.open_with(tmp_path / "audit.db", keys, "node-1"),
               KEYVAULT_DB: lambda: KeyVault.open_with(tmp_path / "keyvault.db", keys)}
    for name, open_store in openers.items():
        store = open_store()
        path = store.path
        store.close()
        new = generate_key(name)
        keys.stage(new)
        conn = dbapi2.connect(str(path))
        conn.execute(f"PRAGMA key = {keys.get(name).sqlcipher_pragma_value()}")
        conn.execute("PRAGMA journal_mode = DELETE").fetchall()
        conn.execute(f"PRAGMA rekey = {new.sqlcipher_pragma_value()}")
        conn.close()
        reopened = open_store()
        assert keys.get(name) == new and reopened.integrity_problems() == []
        reopened.close()
