"""Enrolling and revoking devices on top of the project PKI (``broker.pki``).

Enrolling issues the device's key pair and certificate (CN = its MQTT identity) and records
its group and the matching modes it may ask for. Revoking, in this order: the wipe order
goes out while the device can still receive it (``send_wipe``, ``matcher.wipe_sender``: the
door crypto-shreds its cache and confirms, or the caller records "wipe not confirmed" and the
revocation goes on), the certificate is revoked (CRL), the
identity is marked revoked (the matcher stops syncing it) and the broker is *restarted*:
Mosquitto 2.0 re-reads the CRL on SIGHUP for new handshakes but keeps an established TLS
session open, so only a restart cuts a revoked device that is connected right now. The
other clients reconnect on their own within their back-off (1-30 s).

Rotation without downtime: re-issuing a certificate (``rotate``) writes a new key and
certificate beside a still-valid old one; the device picks them up on its next reconnect and
nothing is revoked, so no broker restart is needed. The PKI registry keeps the old
certificate's serial, so revoking the device later revokes both.

Enrolling a new identity takes effect at the broker's next start: its access rules are read
then (``broker.config``); until that restart the new device connects but may do nothing.

What the matcher asks of every message: ``may_send`` (the sender is an active identity whose
rules let it publish on that topic: for a device, enrolled and not revoked) and, before
matching, ``is_allowed`` (the device's policy allows that matching mode).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable

from appliance.broker.pki import Identity, ProjectPKI
from appliance.durable_file import SHARED, write_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.filecache import read_json
from appliance.protocol import topics

log = logging.getLogger(__name__)

POLICY_FILE = "device-policy.json"
MATCHING_MODES = ("verify", "identify")


@dataclass(frozen=True)
class DevicePolicy:
    name: str
    group: str
    modes: tuple[str, ...]


def _policies(pki: ProjectPKI) -> dict[str, DevicePolicy]:
    entries = read_json(pki.folder / POLICY_FILE, {})
    return {n: DevicePolicy(n, p["group"], tuple(p["modes"])) for n, p in entries.items()}


def _save(pki: ProjectPKI, policies: dict[str, DevicePolicy]) -> None:
    body = {n: {"group": p.group, "modes": list(p.modes)} for n, p in sorted(policies.items())}
    write_durably(pki.folder / POLICY_FILE, json.dumps(body, indent=2).encode("utf-8"), SHARED)


def policy(pki: ProjectPKI, name: str) -> DevicePolicy | None:
    return _policies(pki).get(name)


def enroll_device(pki: ProjectPKI, name: str, group: str = "default",
                  modes: tuple[str, ...] = ("verify",)) -> tuple[Identity, DevicePolicy]:
    bad = [m for m in modes if m not in MATCHING_MODES]
    if not modes or bad:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"matching modes {bad or modes}: allowed {MATCHING_MODES}")
    if name in pki.identities() and pki.identities()[name].revoked:
        raise ApplianceError(ErrorCode.PKI_ERROR, f"{name} was revoked; enroll the replacement under a new name")
    identity = pki.issue_client(name, "device", group)
    policies = _policies(pki)
    policies[name] = DevicePolicy(name, group, tuple(modes))
    _save(pki, policies)
    return identity, policies[name]


def rotate(pki: ProjectPKI, name: str) -> Identity:
    """New key and certificate for an identity; the old certificate stays valid until expiry."""
    identities = pki.identities()
    if name not in identities or identities[name].revoked:
        raise ApplianceError(ErrorCode.PKI_ERROR, f"{name}: not an active identity")
    current = identities[name]
    return pki.issue_client(name, current.role, current.group)


def revoke_device(pki: ProjectPKI, name: str, restart_broker: Callable[[], None],
                  send_wipe: Callable[[str], None] | None = None) -> Identity:
    """Wipe a device (bounded wait, best effort), revoke, then restart the broker so the
    revocation cuts live sessions. ``send_wipe`` is called for a device only (a matcher or
    console holds no cache) and keeps its own outcome for the audit entry (``WipeSender``);
    whatever it raises, the revocation goes on: an incident must never wait on a stolen door."""
    identities = pki.identities()
    if name not in identities:
        raise ApplianceError(ErrorCode.PKI_ERROR, f"unknown identity {name!r}")
    if send_wipe is not None and identities[name].role == "device" and not identities[name].revoked:
        try:
            send_wipe(name)
        except (ApplianceError, OSError) as exc:  # offline or silent: it can no longer sync either
            log.warning("%s: revoked without a confirmed wipe: %s", name, exc)
    pki.revoke(name)
    restart_broker()
    return pki.identities()[name]


def _active(pki: ProjectPKI, name: str) -> Identity | None:
    """The identity, when it was issued and is not revoked; a device must also be enrolled
    (have a policy): a certificate alone, or a revoked one the CRL missed, is not enough."""
    identity = pki.identities().get(name)
    if identity is None or identity.revoked:
        return None
    if identity.role == "device" and policy(pki, name) is None:
        return None
    return identity


def is_allowed(pki: ProjectPKI, name: str, mode: str) -> bool:
    """Whether the device ``name`` may be answered for the matching ``mode`` (``verify`` or
    ``identify``): an enrolled, not revoked device whose policy lists that mode. False for
    anything else - a revoked or unknown name, a matcher, an unknown mode."""
    identity = _active(pki, name)
    found = policy(pki, name)
    return bool(identity and identity.role == "device" and found and mode in found.modes)


def may_send(pki: ProjectPKI, name: str, topic: str) -> bool:
    """Whether a message signed by ``name`` may be acted on when it arrived on ``topic``,
    whatever its type (request, event, alarm, sync ack, ...): ``name`` is an active identity
    (``_active``) and its role's rules (``topics.RIGHTS``) let it publish there. The broker
    enforces the same rules; this is the receiver's own check, so a revoked device, or a
    broker misconfigured, never gets a message recorded."""
    identity = _active(pki, name)
    return bool(identity and topics.may_publish(identity.role, name, topic))


