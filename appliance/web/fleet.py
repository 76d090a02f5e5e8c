"""The door devices as the console sees them: one view shared by ``/api/devices`` and
``/metrics``.

Who is a device, its group and matching modes come from the project PKI and the provisioning
policy; what it holds (acknowledged revision) and when it was last heard of (acknowledgement
or recorded event) from the sync store. A device syncs at least every
``offline.digest_every_s`` (its cache digest), so one not heard of for ``ONLINE_PERIODS`` of
those is reported offline. Lag: the store's current revision minus the one the device holds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from appliance.ops import provisioning
from appliance.web.services import Services

ONLINE_PERIODS = 2  # digest periods without contact before a device counts as offline
DEVICE_ROLE = "device"


@dataclass(frozen=True)
class DeviceView:
    name: str
    group: str
    modes: tuple[str, ...]
    revoked: bool
    acked_revision: int
    lag: int
    last_seen: float | None
    online: bool


def devices(services: Services, now: float | None = None) -> list[DeviceView]:
    """Every provisioned device, by name (call inside ``services.stores()``)."""
    now = time.time() if now is None else now
    window = ONLINE_PERIODS * services.config.offline.digest_every_s
    current = services.data.biometric.revision
    contacts = services.sync.device_contacts()
    out = []
    for name, identity in sorted(services.pki.identities().items()):
        if identity.role != DEVICE_ROLE:
            continue
        policy = provisioning.policy(services.pki, name)
        contact = contacts.get(name)
        seen = max(contact.acked_at, contact.last_event_at) if contact else 0.0
        revision = contact.revision if contact else 0
        out.append(DeviceView(name, policy.group if policy else identity.group, policy.modes if policy else (),
                              identity.revoked, revision, max(0, current - revision), seen or None,
                              bool(seen) and not identity.revoked and now - seen <= window))
    return out
