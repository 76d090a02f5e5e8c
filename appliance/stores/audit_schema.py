"""The audit log's tables: ``AuditLog.MIGRATIONS`` (``stores.audit`` owns these tables and is
the only code that reads or writes them; their definitions sit here so that the log's module
stays within its size bound). Append-only is enforced by the triggers below."""
from __future__ import annotations

MIGRATIONS = (
    """
    CREATE TABLE entries (
        seq INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
        action TEXT NOT NULL, object TEXT NOT NULL, result TEXT NOT NULL, device TEXT NOT NULL,
        detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
    CREATE TABLE checkpoints (
        seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, time REAL NOT NULL, node TEXT NOT NULL,
        public_key TEXT NOT NULL, signature TEXT NOT NULL);
    CREATE TABLE prune_gate (id INTEGER PRIMARY KEY CHECK (id = 1), open INTEGER NOT NULL);
    INSERT INTO prune_gate VALUES (1, 0);
    CREATE TRIGGER entries_append_only BEFORE UPDATE ON entries
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
    CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
        WHEN (SELECT open FROM prune_gate WHERE id = 1) = 0
        BEGIN SELECT RAISE(ABORT, 'audit entries are removed only by retention pruning'); END;
    CREATE TRIGGER checkpoints_append_only BEFORE UPDATE ON checkpoints
        BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
    CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
        WHEN (SELECT open FROM prune_gate WHERE id = 1) = 0
        BEGIN SELECT RAISE(ABORT, 'checkpoints are removed only by retention pruning'); END;
    """,
    """
    CREATE TABLE prunes (
        seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, time REAL NOT NULL, node TEXT NOT NULL,
        signature TEXT NOT NULL);
    CREATE TRIGGER prunes_append_only BEFORE UPDATE ON prunes
        BEGIN SELECT RAISE(ABORT, 'prune records are append-only'); END;
    CREATE TRIGGER prunes_no_delete BEFORE DELETE ON prunes
        WHEN (SELECT open FROM prune_gate WHERE id = 1) = 0
        BEGIN SELECT RAISE(ABORT, 'prune records are removed only by retention pruning'); END;
    CREATE TABLE tail (
        id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL, time REAL NOT NULL,
        node TEXT NOT NULL, signature TEXT NOT NULL);
    """,
    # door decisions that reached the centre from a device: when the device decided
    # (``origin_at``, 0 = the entry's own time) and the event as the device signed it
    # (``evidence``, canonical JSON with its signature; "" = none). Both join the hash only
    # when set, so every entry written before keeps its hash.
    """
    ALTER TABLE entries ADD COLUMN origin_at REAL NOT NULL DEFAULT 0;
    ALTER TABLE entries ADD COLUMN evidence TEXT NOT NULL DEFAULT '';
    """,
)
