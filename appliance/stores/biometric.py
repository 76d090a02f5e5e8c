"""Biometric store: encrypted templates keyed by a pseudonymous subject id, no identity data.

Rows hold the template encrypted with the subject's data key (``security.datakeys``) inside
a SQLCipher file, the pack it belongs to, its quality vector and a revision. A store-wide
revision counter orders every change (upsert or tombstone) so device caches sync by asking
"what changed since revision N".
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.datakeys import decode_vector, decrypt_template, encode_vector, encrypt_template
from appliance.security.keys import BIOMETRIC_DB
from appliance.security.roles import Permission, Principal, require, require_any
from appliance.stores.base import CipherStore
from appliance.stores.keyvault import KeyVault
from appliance.vision.templates import Template


@dataclass(frozen=True)
class TemplateRow:
    """A stored template's metadata (the vector stays encrypted until asked for)."""

    subject_id: str
    pack_id: str
    pack_version: str
    quality: np.ndarray
    created: float
    updated: float
    revision: int


@dataclass(frozen=True)
class Tombstone:
    subject_id: str
    revision: int
    deleted_at: float
    receipt_id: str = ""  # the deletion receipt issued with it ("" before schema 2, or a restore replay)


class BiometricStore(CipherStore):
    KEY_NAME = BIOMETRIC_DB
    MIGRATIONS = (
        """
        CREATE TABLE templates (
            subject_id TEXT NOT NULL, pack_id TEXT NOT NULL, pack_version TEXT NOT NULL,
            sealed BLOB NOT NULL, quality BLOB NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
            revision INTEGER NOT NULL, PRIMARY KEY (subject_id, pack_id, pack_version));
        CREATE INDEX templates_revision ON templates(revision);
        CREATE TABLE tombstones (subject_id TEXT PRIMARY KEY, revision INTEGER NOT NULL, deleted_at REAL NOT NULL);
        CREATE TABLE revision (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
        INSERT INTO revision VALUES (1, 0);
        """,
        # a tombstone names the receipt issued with it: deleting again answers with that proof
        "ALTER TABLE tombstones ADD COLUMN receipt_id TEXT NOT NULL DEFAULT '';",
    )

    def _next_revision(self) -> int:
        self.execute("UPDATE revision SET value = value + 1 WHERE id = 1")
        return int(self.execute("SELECT value FROM revision WHERE id = 1").fetchone()[0])

    @property
    def revision(self) -> int:
        return int(self.execute("SELECT value FROM revision WHERE id = 1").fetchone()[0])

    def put_template(self, principal: Principal, subject_id: str, template: Template, quality: np.ndarray,
                     vault: KeyVault) -> int:
        """Store (or replace) the subject's template for its pack; returns the new revision.
        Callers enroll through ``stores.protected``, which checks consent first."""
        require(principal, Permission.ENROLL)
        data_key = vault.data_key(subject_id, create=True)
        sealed = encrypt_template(data_key, subject_id, template.pack_id, template.pack_version, template.vector)
        now = time.time()
        with self.transaction():
            revision = self._next_revision()
            self.execute(
                "INSERT INTO templates VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (subject_id, pack_id, pack_version) "
                "DO UPDATE SET sealed = excluded.sealed, quality = excluded.quality, updated = excluded.updated, "
                "revision = excluded.revision",
                (subject_id, template.pack_id, template.pack_version, sealed, encode_vector(quality), now, now,
                 revision),
            )
            self.execute("DELETE FROM tombstones WHERE subject_id = ?", (subject_id,))
        return revision

    def restamp(self, subject_ids: list[str]) -> int:
        """Give each listed subject's templates a new revision, unchanged otherwise: what
        they may open changed (appliance.access), so device caches are told without a
        re-enrollment. Returns the head revision (unchanged when nobody has a template)."""
        with self.transaction():
            for subject_id in sorted(set(subject_ids)):
                if self.execute("SELECT 1 FROM templates WHERE subject_id = ? LIMIT 1", (subject_id,)).fetchone():
                    self.execute("UPDATE templates SET revision = ? WHERE subject_id = ?",
                                 (self._next_revision(), subject_id))
        return self.revision

    def template(self, principal: Principal, subject_id: str, pack_id: str, pack_version: str,
                 vault: KeyVault) -> Template:
        """The decrypted template (for the matcher or a device-cache sync only)."""
        require_any(principal, Permission.VERIFY, Permission.SYNC_DEVICES)
        row = self.execute(
            "SELECT sealed FROM templates WHERE subject_id = ? AND pack_id = ? AND pack_version = ?",
            (subject_id, pack_id, pack_version)).fetchone()
        if row is None:
            raise ApplianceError(ErrorCode.SUBJECT_NOT_FOUND, f"{subject_id} has no {pack_id}@{pack_version} template")
        vector = decrypt_template(vault.data_key(subject_id), subject_id, pack_id, pack_version, row[0])
        return Template(vector, pack_id, pack_version)

    def rows(self, subject_id: str | None = None, pack: tuple[str, str] | None = None) -> list[TemplateRow]:
        """Template metadata (no vectors), for retention, sync and reports; ``pack`` = (id, version)."""
        where, params = _where(subject_id=subject_id, pack=pack)
        return self._template_rows(where, params)

    def _template_rows(self, where: str, params: list, order: str = "", limit: int | None = None) -> list[TemplateRow]:
        sql = "SELECT subject_id, pack_id, pack_version, quality, created, updated, revision FROM templates" + where
        if order:
            sql += f" ORDER BY {order}"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, limit]
        return [TemplateRow(r[0], r[1], r[2], decode_vector(r[3]), r[4], r[5], r[6]) for r in self.execute(sql, params)]

    def delete_subject(self, principal: Principal, subject_id: str, receipt_id: str = "") -> tuple[int, int]:
        """Remove every template of the subject and leave a tombstone; (rows removed, revision).

        When there was no template left to remove and a tombstone already stands (templates
        expired by retention, the person deleted later), that tombstone stays at its revision
        - the caches have nothing new to drop - and takes the new receipt id."""
        require_any(principal, Permission.DELETE_SUBJECT, Permission.WITHDRAW_CONSENT, Permission.RUN_RETENTION)
        with self.transaction():
            removed = self.execute("DELETE FROM templates WHERE subject_id = ?", (subject_id,)).rowcount
            standing = self.tombstone(subject_id)
            if not removed and standing is not None:
                if receipt_id:
                    self.execute("UPDATE tombstones SET receipt_id = ? WHERE subject_id = ?", (receipt_id, subject_id))
                return 0, standing.revision
            revision = self._next_revision()
            self.execute("INSERT OR REPLACE INTO tombstones (subject_id, revision, deleted_at, receipt_id) "
                         "VALUES (?, ?, ?, ?)", (subject_id, revision, time.time(), receipt_id))
        self.checkpoint()
        return removed, revision

    def tombstone(self, subject_id: str) -> Tombstone | None:
        """The subject's deletion record, if it was deleted (and not enrolled again since)."""
        row = self.execute("SELECT subject_id, revision, deleted_at, receipt_id FROM tombstones WHERE subject_id = ?",
                           (subject_id,)).fetchone()
        return Tombstone(*row) if row is not None else None

    def changes_since(self, revision: int, upto: int | None = None, pack: tuple[str, str] | None = None,
                      limit: int | None = None) -> tuple[list[TemplateRow], list[Tombstone]]:
        """What a device cache at ``revision`` must apply to reach ``upto`` (default: the head):
        the templates (of ``pack`` only, when given) and the tombstones whose revision lies in
        ``(revision, upto]``, each in revision order and each at most ``limit`` long."""
        where, params = _where(pack=pack, after=revision, upto=upto)
        return (self._template_rows(where, params, "revision", limit),
                self.tombstones(after=revision, upto=upto, limit=limit))

    def snapshot_page(self, pack: tuple[str, str], after_subject: str, limit: int) -> list[TemplateRow]:
        """One page of a snapshot: the templates of ``pack`` after ``after_subject`` (the
        cursor), in subject order."""
        where, params = _where(pack=pack)
        return self._template_rows(where + " AND subject_id > ?", [*params, after_subject], "subject_id", limit)

    def tombstones(self, after: int = 0, upto: int | None = None, limit: int | None = None) -> list[Tombstone]:
        """Deletion records with a revision in ``(after, upto]`` (default: all), in revision order."""
        where, params = _where(after=after, upto=upto)
        sql = "SELECT subject_id, revision, deleted_at, receipt_id FROM tombstones" + where + " ORDER BY revision"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, limit]
        return [Tombstone(*r) for r in self.execute(sql, params)]

    def advance_revision(self, at_least: int) -> int:
        """Move the store revision forward to at least ``at_least``, never back (after a
        restore, caches that saw the live store must see every later change as new)."""
        with self.transaction():
            self.execute("UPDATE revision SET value = max(value, ?) WHERE id = 1", (at_least,))
        return self.revision


def _where(subject_id: str | None = None, pack: tuple[str, str] | None = None, after: int | None = None,
           upto: int | None = None) -> tuple[str, list]:
    """A WHERE clause over the columns ``templates`` and ``tombstones`` share, and its parameters."""
    clauses, params = [], []
    if subject_id:
        clauses.append("subject_id = ?")
        params.append(subject_id)
    if pack is not None:
        clauses.append("pack_id = ? AND pack_version = ?")
        params += [pack[0], pack[1]]
    if after is not None:
        clauses.append("revision > ?")
        params.append(after)
    if upto is not None:
        clauses.append("revision <= ?")
        params.append(upto)
    return (" WHERE " + " AND ".join(clauses) if clauses else " WHERE 1"), params
