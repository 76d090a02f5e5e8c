"""Versioned MQTT topics. A device owns ``appliance/v1/dev/<device-id>/...`` and nothing else."""
from __future__ import annotations

PREFIX = "appliance/v1"
SHARE_GROUP = "matchers"  # shared subscription: N matcher replicas split the requests

REQUEST, DECISION, EVENT, ALARM, TELEMETRY, AVAILABILITY, SYNC, SYNC_ACK = (
    "req", "decision", "event", "alarm", "telemetry", "availability", "sync", "sync-ack",
)
DEVICE_PUBLISHES = (REQUEST, EVENT, ALARM, TELEMETRY, AVAILABILITY, SYNC_ACK)
DEVICE_SUBSCRIBES = (DECISION, SYNC)
ENROLLMENT_EVENTS = f"{PREFIX}/enrollment/events"


def device_topic(device_id: str, kind: str) -> str:
    return f"{PREFIX}/dev/{device_id}/{kind}"


def all_devices(kind: str) -> str:
    return device_topic("+", kind)


def shared(topic: str) -> str:
    return f"$share/{SHARE_GROUP}/{topic}"


def device_of(topic: str) -> str | None:
    """The device id of a device topic, or None when the topic is not one."""
    parts = topic.split("/")
    if len(parts) == 5 and "/".join(parts[:3]) == f"{PREFIX}/dev":
        return parts[3]
    return None


# What non-device identities may do (rendered into the broker ACL by name).
ROLE_RIGHTS: dict[str, tuple[tuple[str, str], ...]] = {
    "matcher": (
        *(("read", all_devices(kind)) for kind in DEVICE_PUBLISHES),
        ("write", all_devices(DECISION)),
        ("write", all_devices(SYNC)),
        ("write", ENROLLMENT_EVENTS),
    ),
    # auditors see every payload on the wire and publish nothing
    "auditor": (("read", f"{PREFIX}/#"),),
    # third-party systems: pseudonymous, masked enrollment events only
    "integration": (("read", ENROLLMENT_EVENTS),),
}
