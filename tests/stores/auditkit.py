"""What an attacker holding the audit database key (but not the node's signing key) can do."""
from __future__ import annotations

from appliance.stores.audit import AuditLog

# the eleven columns every entry has (a door decision's origin_at and evidence default to none)
INSERT_ENTRY = ("INSERT INTO entries (seq, time, actor, role, action, object, result, device, detail, prev, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def tamper(audit: AuditLog, *statements: tuple[str, tuple]) -> None:
    """Drop the append-only guards, then edit through SQL."""
    audit.conn.executescript("DROP TRIGGER IF EXISTS entries_append_only; DROP TRIGGER IF EXISTS entries_no_delete;")
    for sql, params in statements:
        audit.execute(sql, params)
