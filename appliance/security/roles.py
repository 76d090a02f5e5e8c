"""Roles with separated duties and the one permission check every personal-data call makes.

Four roles as the protection rules ask: the system administrator runs the machine (stores,
backups, retention) but cannot read identities unmasked; the security administrator owns keys,
deletion and unmasked access; the auditor reads and verifies the log and changes nothing; the
operator enrolls and verifies people at the desk. No role has a permission that erases or
edits the audit log: only retention pruning past the legal minimum removes entries.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from appliance.errors import ApplianceError, ErrorCode


class Role(Enum):
    SYSTEM_ADMIN = "system_administrator"
    SECURITY_ADMIN = "security_administrator"
    AUDITOR = "auditor"
    OPERATOR = "operator"


class Permission(Enum):
    REGISTER_PERSON = "register person and record consent"
    ENROLL = "enroll a template"
    VERIFY = "verify a probe (pass/fail only)"
    READ_IDENTITY_MASKED = "read identity records, masked"
    READ_IDENTITY_UNMASKED = "read identity records unmasked (logged)"
    WITHDRAW_CONSENT = "record withdrawal of consent"
    DELETE_SUBJECT = "delete a subject"
    ROTATE_KEYS = "rotate keys"
    MANAGE_STORES = "back up, restore, migrate, check stores"
    RUN_RETENTION = "run retention"
    SYNC_DEVICES = "fill device caches"
    READ_AUDIT = "read and export the audit log (masked)"
    VERIFY_AUDIT = "verify the audit chain"
    READ_EVENTS = "read the door log (masked)"
    MANAGE_DEVICES = "see and revoke door devices"
    OVERRIDE_DUPLICATE = "enroll a face found already enrolled (reason recorded)"


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.SYSTEM_ADMIN: frozenset({
        Permission.MANAGE_STORES, Permission.RUN_RETENTION, Permission.SYNC_DEVICES,
        Permission.VERIFY_AUDIT, Permission.READ_EVENTS, Permission.MANAGE_DEVICES,
    }),
    Role.SECURITY_ADMIN: frozenset({
        Permission.ROTATE_KEYS, Permission.DELETE_SUBJECT, Permission.WITHDRAW_CONSENT,
        Permission.READ_IDENTITY_MASKED, Permission.READ_IDENTITY_UNMASKED, Permission.VERIFY_AUDIT,
        Permission.READ_EVENTS, Permission.MANAGE_DEVICES, Permission.OVERRIDE_DUPLICATE,
    }),
    Role.AUDITOR: frozenset({Permission.READ_AUDIT, Permission.VERIFY_AUDIT, Permission.READ_EVENTS}),
    Role.OPERATOR: frozenset({
        Permission.REGISTER_PERSON, Permission.ENROLL, Permission.VERIFY,
        Permission.READ_IDENTITY_MASKED, Permission.WITHDRAW_CONSENT, Permission.READ_EVENTS,
    }),
}

# What an API token may be limited to (``--scope``). A token acts with its account's role
# narrowed to the union of its scopes: it never has a permission its account lacks. Account
# management is not a scope: it needs an interactive session with a second factor.
SCOPES: dict[str, frozenset[Permission]] = {
    "people:read": frozenset({Permission.READ_IDENTITY_MASKED}),
    "people:write": frozenset({Permission.REGISTER_PERSON, Permission.ENROLL, Permission.WITHDRAW_CONSENT,
                               Permission.DELETE_SUBJECT, Permission.OVERRIDE_DUPLICATE}),
    "identify": frozenset({Permission.VERIFY}),
    "events:read": frozenset({Permission.READ_EVENTS}),
    "devices": frozenset({Permission.MANAGE_DEVICES, Permission.SYNC_DEVICES}),
    "audit": frozenset({Permission.READ_AUDIT, Permission.VERIFY_AUDIT}),
    "keys": frozenset({Permission.ROTATE_KEYS}),
    "maintenance": frozenset({Permission.MANAGE_STORES, Permission.RUN_RETENTION, Permission.VERIFY_AUDIT}),
}


@dataclass(frozen=True)
class Principal:
    """Who acts: an account id (not a person's name), its role and the device it acts from."""

    actor: str
    role: Role
    device: str = "local"
    # an API token's scopes narrow the role (None: the whole role, as for a session)
    scopes: frozenset[str] | None = None

    def can(self, permission: Permission) -> bool:
        if permission not in PERMISSIONS[self.role]:
            return False
        return self.scopes is None or any(permission in SCOPES.get(s, frozenset()) for s in self.scopes)


def require(principal: Principal, permission: Permission) -> None:
    """Raise PERMISSION_DENIED unless the principal's role grants ``permission``."""
    if not isinstance(principal, Principal):
        raise ApplianceError(ErrorCode.PERMISSION_DENIED, "no acting principal given")
    if not principal.can(permission):
        raise ApplianceError(
            ErrorCode.PERMISSION_DENIED,
            f"{principal.actor} ({principal.role.value}) may not {permission.value}",
        )


def scopes_named(values: list[str] | tuple[str, ...]) -> frozenset[str]:
    """Validated token scopes (``people:read``, ...); an unknown one names the choices."""
    unknown = sorted(set(values) - set(SCOPES))
    if unknown or not values:
        raise ApplianceError(ErrorCode.PERMISSION_DENIED,
                             f"unknown or no scope {', '.join(unknown)!r}; one or more of {', '.join(SCOPES)}")
    return frozenset(values)


def role_named(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ApplianceError(ErrorCode.PERMISSION_DENIED, f"unknown role {value!r}; one of {allowed}") from None


def require_any(principal: Principal, *permissions: Permission) -> None:
    """Raise PERMISSION_DENIED unless the role grants at least one of ``permissions``."""
    if isinstance(principal, Principal) and any(principal.can(p) for p in permissions):
        return
    require(principal, permissions[0])
