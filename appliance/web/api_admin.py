"""``/api/devices`` and ``/api/audit``: the door devices and the operation log.

Revoking a device is ``ops.provisioning.revoke_device``, as ``appliance provision revoke``:
the door is first ordered to crypto-shred its cache (``matcher.wipe_sender``; the audit entry
and the answer's ``detail`` say whether it confirmed within the bounded wait), then the PKI
revokes every certificate the device was issued and the matcher stops hearing it at once;
the broker must restart to cut a live session, which this service (sandboxed, without
rights over other units) asks systemd for and reports whether it happened. The audit log is
exported masked (``AuditLog.export``, itself logged) and verified like ``appliance audit
verify``.
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher import wipe_sender
from appliance.ops import provisioning
from appliance.ops.broker_unit import BrokerRestart
from appliance.ops.bundle import DIRECTORY_FILE
from appliance.security.roles import Permission, Principal
from appliance.web import fleet, models
from appliance.web.auth import allowed, services_of
from appliance.web.exports import csv_response

router = APIRouter(prefix="/api", tags=["devices", "audit"])
AUDIT_COLUMNS = ("seq", "time", "actor", "role", "action", "object", "result", "device", "detail", "hash")
MAX_AUDIT_PAGE = 1000
ManagesDevices = Annotated[Principal, Depends(allowed(Permission.MANAGE_DEVICES))]
ReadsAudit = Annotated[Principal, Depends(allowed(Permission.READ_AUDIT))]
VerifiesAudit = Annotated[Principal, Depends(allowed(Permission.VERIFY_AUDIT))]


@router.get("/devices", response_model=list[models.Device], summary="Door devices: policy, sync state, online")
def list_devices(request: Request, principal: ManagesDevices
                 ) -> list[models.Device]:
    services = services_of(request)
    with services.stores():
        found = fleet.devices(services)
    return [models.Device(name=d.name, group=d.group, modes=list(d.modes), revoked=d.revoked,
                          acked_revision=d.acked_revision, lag=d.lag, last_seen=d.last_seen, online=d.online)
            for d in found]


@router.post("/devices/{name}/revoke", response_model=models.Revocation,
             summary="Revoke a device (certificates on the CRL; the matcher stops hearing it)")
def revoke_device(request: Request, principal: ManagesDevices, name: str) -> models.Revocation:
    services = services_of(request)
    identity = services.pki.identities().get(name)
    if identity is None or identity.role != fleet.DEVICE_ROLE:
        raise ApplianceError(ErrorCode.PKI_ERROR, f"no device {name!r}")
    restart = BrokerRestart()
    # the wait for the door's confirmation holds no store: other requests go on meanwhile
    wipe = wipe_sender.for_host(services.pki, services.root / DIRECTORY_FILE, services.data.node,
                                services.config, principal.actor)
    provisioning.revoke_device(services.pki, name, restart, wipe)
    with services.stores():
        services.data.audit.append(principal, "device.revoke", name, "ok",
                                   f"{wipe.detail}; {'broker restarted' if restart.done else 'broker restart pending'}")
    return models.Revocation(name=name, revoked=True, broker_restarted=restart.done,
                             detail=f"{wipe.detail}; {restart.detail}")


@router.get("/audit", response_model=models.AuditPage, summary="The operation log, masked (or CSV)",
            responses={200: {"content": {"text/csv": {}}}})
def export_audit(request: Request, principal: ReadsAudit, since: float | None = None,
                 offset: Annotated[int, Query(ge=0)] = 0,
                 limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = models.DEFAULT_PAGE,
                 format: Literal["json", "csv"] = "json",  # noqa: A002 - the public parameter name
                 ) -> models.AuditPage | Response:
    services = services_of(request)
    with services.stores():
        entries = services.data.audit.export(principal, since)
    if format == "csv":
        return csv_response(entries, AUDIT_COLUMNS, "audit.csv")
    page = entries[offset:offset + limit]
    return models.AuditPage(items=[models.AuditEntry(**e) for e in page], total=len(entries))


@router.post("/audit/verify", response_model=models.AuditVerdict, summary="Verify the audit chain and signed head")
def verify_audit(request: Request, principal: VerifiesAudit
                 ) -> models.AuditVerdict:
    services = services_of(request)
    with services.stores():
        verdict = services.data.audit.verify(principal, max_head_age_s=services.config.security.audit_head_max_age_s)
    return models.AuditVerdict(ok=verdict.ok, entries=verdict.entries, first_bad=verdict.first_bad,
                               reason=verdict.reason, head_time=verdict.head_time)
