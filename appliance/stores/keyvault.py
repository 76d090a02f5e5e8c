"""Key vault: the wrapped per-subject data keys, in their own file (crypto-shredding).

Kept apart from the biometric store on purpose: backups of the biometric store do not carry
the data keys, so destroying a subject's key here makes the subject's template unreadable in
every backup taken before the deletion. The vault is small; if it is backed up at all, those
backups must expire within the deletion deadline (see docs/security.md).
"""
from __future__ import annotations

import time
from pathlib import Path

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.datakeys import new_data_key, unwrap_data_key, wrap_data_key
from appliance.security.keys import KEYVAULT_DB, TEMPLATE_WRAP, KeyProvider, SecretKey
from appliance.stores.base import CipherStore


class KeyVault(CipherStore):
    KEY_NAME = KEYVAULT_DB
    MIGRATIONS = (
        "CREATE TABLE data_keys (subject_id TEXT PRIMARY KEY, wrapped BLOB NOT NULL, created REAL NOT NULL);",
    )

    def __init__(self, path: Path, key: SecretKey, wrap_key: SecretKey) -> None:
        super().__init__(path, key)
        self._wrap_key = wrap_key

    @classmethod
    def open_with(cls, path: Path, keys: KeyProvider) -> "KeyVault":
        """Open with the current wrap key; if a rotation was interrupted after the re-wrap
        committed but before the key file switched, finish it (the staged key unwraps)."""
        vault = cls.open(path, keys, wrap_key=keys.get(TEMPLATE_WRAP))
        staged = keys.staged(TEMPLATE_WRAP)
        if staged is not None:
            row = vault.execute("SELECT subject_id, wrapped FROM data_keys LIMIT 1").fetchone()
            if row is not None:
                try:
                    unwrap_data_key(vault._wrap_key, *row)
                except ApplianceError:
                    unwrap_data_key(staged, *row)  # raises if neither key fits
                    keys.commit(TEMPLATE_WRAP)
                    vault._wrap_key = staged
        return vault

    def data_key(self, subject_id: str, create: bool = False) -> bytes:
        row = self.execute("SELECT wrapped FROM data_keys WHERE subject_id = ?", (subject_id,)).fetchone()
        if row is not None:
            return unwrap_data_key(self._wrap_key, subject_id, row[0])
        if not create:
            raise ApplianceError(ErrorCode.TEMPLATE_SHREDDED, f"no data key for {subject_id}")
        key = new_data_key()
        with self.transaction():
            self.execute("INSERT INTO data_keys VALUES (?, ?, ?)",
                         (subject_id, wrap_data_key(self._wrap_key, subject_id, key), time.time()))
        return key

    def has_key(self, subject_id: str) -> bool:
        return self.execute("SELECT 1 FROM data_keys WHERE subject_id = ?", (subject_id,)).fetchone() is not None

    def destroy(self, subject_id: str) -> int:
        """Destroy the subject's data key; the WAL is truncated so no copy stays in it."""
        with self.transaction():
            removed = self.execute("DELETE FROM data_keys WHERE subject_id = ?", (subject_id,)).rowcount
        self.checkpoint()
        return removed

    def rewrap(self, new_wrap_key: SecretKey) -> int:
        """Re-wrap every data key under a new template-wrap key (rotation of that key)."""
        with self.transaction():
            rows = self.execute("SELECT subject_id, wrapped FROM data_keys").fetchall()
            for subject_id, wrapped in rows:
                key = unwrap_data_key(self._wrap_key, subject_id, wrapped)
                self.execute("UPDATE data_keys SET wrapped = ? WHERE subject_id = ?",
                             (wrap_data_key(new_wrap_key, subject_id, key), subject_id))
        self._wrap_key = new_wrap_key
        return len(rows)
