"""SQLCipher store base: raw-key open with a clear wrong-key error, WAL, migrations, backup,
restore, integrity check and crash-safe key rotation.

Every store (biometric, identity, key vault, audit, device cache, outbox) is one encrypted
SQLite file with its own key, so one leaked key opens one store. ``synchronous=FULL`` in WAL
mode makes every committed transaction durable against a killed process and power loss;
``secure_delete`` overwrites freed pages so deleted rows do not linger in the file.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlcipher3 import dbapi2 as sqlcipher

from appliance.durable_file import replace_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.keys import KeyProvider, SecretKey

BUSY_TIMEOUT_S = 10.0
BACKUP_SUFFIX = ".bak.tmp"
STORE_FILE_MODE = 0o600


class CipherStore:
    """An open SQLCipher database with a versioned schema.

    Subclasses set ``KEY_NAME`` (which provider key opens it) and ``MIGRATIONS``: SQL scripts,
    the i-th bringing the schema from version i to i+1. Migrations only ever append.
    """

    KEY_NAME = ""
    MIGRATIONS: Sequence[str] = ()

    def __init__(self, path: Path, key: SecretKey) -> None:
        self.path = Path(path)
        self._key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = _connect(self.path, key)
        self.migrate()

    @classmethod
    def open(cls, path: Path, keys: KeyProvider, **extra: Any) -> Any:
        """Open with the provider's key; finishes an interrupted rotation (see :meth:`rekey`).
        ``extra`` goes to the constructor of stores that need more than their key."""
        key = keys.get(cls.KEY_NAME)
        try:
            return cls(path, key, **extra)
        except ApplianceError as exc:
            staged = keys.staged(cls.KEY_NAME)
            if exc.code is not ErrorCode.STORE_UNREADABLE or staged is None:
                raise
            store = cls(path, staged, **extra)  # the rekey finished but the key file was not yet switched
            keys.commit(cls.KEY_NAME)
            return store

    # -- schema -------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> int:
        current, target = self.schema_version, len(self.MIGRATIONS)
        if current > target:
            raise ApplianceError(
                ErrorCode.STORE_SCHEMA, f"{self.path} has schema {current}, this software knows {target}"
            )
        for version in range(current, target):
            # executescript runs its statements as written, so the migration and its version
            # number commit together or not at all
            self.conn.executescript(
                f"BEGIN IMMEDIATE;\n{self.MIGRATIONS[version]}\nPRAGMA user_version = {version + 1};\nCOMMIT;"
            )
        return self.schema_version

    # -- transactions -------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """BEGIN IMMEDIATE ... COMMIT; joins an enclosing transaction of the same store."""
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        with full_disk_refused(self.path):
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk); a COMMIT that failed may leave the
                # transaction open, and the next one must not join it
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params)

    def set_synchronous(self, level: str) -> None:
        """``FULL`` (the default: every commit survives power loss), or ``NORMAL``/``OFF`` for
        a bulk set-up that may be lost (benchmark fixtures; never a live store)."""
        if level not in ("OFF", "NORMAL", "FULL"):
            raise ValueError(f"synchronous level {level!r}")
        self.conn.execute(f"PRAGMA synchronous = {level}")

    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it (after deletions: no old pages left)."""
        with full_disk_refused(self.path):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # -- integrity, backup, restore, rekey ---------------------------------------------
    def integrity_problems(self) -> list[str]:
        """Empty when both SQLCipher's page HMACs and SQLite's structure check pass."""
        problems = [row[0] for row in self.conn.execute("PRAGMA cipher_integrity_check")]
        try:
            problems += [row[0] for row in self.conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
        except sqlcipher.DatabaseError as exc:  # a page that fails its HMAC cannot be walked
            problems.append(f"structure check aborted: {exc}")
        return problems

    def check_integrity(self) -> None:
        problems = self.integrity_problems()
        if problems:
            raise ApplianceError(ErrorCode.STORE_CORRUPT, f"{self.path}: {problems[0]} ({len(problems)} problems)")

    def backup(self, destination: Path) -> Path:
        """Online backup (readers and writers may continue) into an encrypted copy, same key."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp = destination.with_name(destination.name + BACKUP_SUFFIX)
        tmp.unlink(missing_ok=True)
        with full_disk_refused(destination):  # a full backup medium: E213, no copy left half made
            try:
                target = _connect(tmp, self._key)
                try:
                    self.conn.backup(target)
                    target.execute("PRAGMA journal_mode = DELETE").fetchall()
                finally:
                    target.close()
            except sqlcipher.OperationalError:
                tmp.unlink(missing_ok=True)
                raise
        replace_durably(tmp, destination)
        return destination

    def restore(self, source: Path) -> None:
        """Replace the contents with a backup; the backup must open with this store's key and
        pass the integrity check before anything is overwritten."""
        backup = _connect(Path(source), self._key)
        try:
            problems = [row[0] for row in backup.execute("PRAGMA cipher_integrity_check")]
            if problems:
                raise ApplianceError(ErrorCode.STORE_CORRUPT, f"backup {source}: {problems[0]}")
            backup.backup(self.conn)
        finally:
            backup.close()
        self.migrate()

    def rekey(self, keys: KeyProvider) -> SecretKey:
        """Re-encrypt under a new key. The new key is staged before the file changes and made
        current after, so a crash at any point leaves a store that one of the two keys opens."""
        from appliance.security.keys import generate_key

        new_key = generate_key(self.KEY_NAME)
        keys.stage(new_key)
        # SQLCipher's rekey is not reliable with pages still in the WAL: leave WAL mode first
        self.conn.execute("PRAGMA journal_mode = DELETE").fetchall()
        self.conn.execute(f"PRAGMA rekey = {new_key.sqlcipher_pragma_value()}").fetchall()
        self.conn.execute("PRAGMA journal_mode = WAL").fetchall()
        keys.commit(self.KEY_NAME)
        self._key = new_key
        return new_key

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "CipherStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_integrity_problems(path: Path, key: SecretKey) -> list[str]:
    """A store file checked read-only (it must not change while it is verified, e.g. a backup
    copy): it opens with ``key``, every page passes its HMAC, and the structure check passes.
    Empty when all is well."""
    conn = sqlcipher.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = {key.sqlcipher_pragma_value()}")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            problems = [r[0] for r in conn.execute("PRAGMA cipher_integrity_check")]
            problems += [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        except sqlcipher.DatabaseError as exc:
            problems = [f"cannot be read with key {key.name!r}: {exc}"]
    finally:
        conn.close()
    return problems


def _connect(path: Path, key: SecretKey) -> Any:
    """Open and key a connection; a wrong key or a plain SQLite file fails here, clearly.

    SQLCipher reports a wrong key only at the first statement, as its own
    ``sqlcipher3.dbapi2.DatabaseError`` (not ``sqlite3``'s class), so probe immediately.
    """
    if not path.exists():  # owner-only from the first byte; SQLite gives -wal/-shm the same mode
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, STORE_FILE_MODE))
    conn = sqlcipher.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")  # no page-decrypt noise on stderr
        conn.execute(f"PRAGMA key = {key.sqlcipher_pragma_value()}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher.DatabaseError:
        conn.close()
        raise ApplianceError(
            ErrorCode.STORE_UNREADABLE, f"{path} (key {key.name!r}, fingerprint {key.fingerprint})"
        ) from None
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA secure_delete = ON")
    return conn


@contextmanager
def full_disk_refused(path: Path) -> Iterator[None]:
    """SQLite's own "database or disk is full" (or an I/O error) about ``path`` in the block is
    ``STORE_UNWRITABLE``, as ``durable_file.disk_errors`` makes a file's ENOSPC."""
    try:
        yield
    except sqlcipher.OperationalError as exc:
        if _unwritable(exc):
            raise ApplianceError(ErrorCode.STORE_UNWRITABLE, f"{path.name}: {exc}") from exc
        raise


def _unwritable(exc: sqlcipher.OperationalError) -> bool:
    """A full disk or an I/O error (SQLITE_FULL, SQLITE_IOERR and its extended codes), as
    ``STORE_UNWRITABLE``: a door turns it into "unavailable", the audit writer retries. A
    locked database is not one of them."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (sqlcipher.SQLITE_FULL, sqlcipher.SQLITE_IOERR)
