"""Versioned MQTT topics. A device owns ``appliance/v1/dev/<device-id>/...`` and nothing else."""
from __future__ import annotations

PREFIX = "appliance/v1"
SHARE_GROUP = "matchers"  # shared subscription: N matcher replicas split the requests

REQUEST, DECISION, EVENT, ALARM, TELEMETRY, AVAILABILITY, SYNC, SYNC_ACK = (
    "req", "decision", "event", "alarm", "telemetry", "availability", "sync", "sync-ack",
)
# a card or PIN pass (protocol.credential_messages), answered on the door's DECISION topic
CREDENTIAL = "credential"
DEVICE_PUBLISHES = (REQUEST, EVENT, ALARM, TELEMETRY, AVAILABILITY, SYNC_ACK, CREDENTIAL)
DEVICE_SUBSCRIBES = (DECISION, SYNC)
ENROLLMENT_EVENTS = f"{PREFIX}/enrollment/events"
# Enrollment from a door camera: the console asks one device for a capture burst on the
# device's ``enroll-capture`` topic and the device answers on its own ``enroll-result``. Only
# consoles take part: no matcher may ask a door to capture, nor read what it captured.
ENROLL_CAPTURE, ENROLL_RESULT = "enroll-capture", "enroll-result"
# Remote wipe of a door being revoked: a matcher identity sends ``wipe`` to that one door,
# which crypto-shreds its cache and confirms on its own ``wipe-done`` (``edge.wipe``,
# ``matcher.wipe_sender``). The confirmation is read by the revoking command's own
# connection, not by the matchers' shared group, so it is not one of DEVICE_PUBLISHES.
WIPE, WIPE_DONE = "wipe", "wipe-done"
# every topic kind whose one writer is the device the topic belongs to (the receiver refuses
# an envelope signed by anyone else there: ``protocol.inbound``)
DEVICE_WRITES = (*DEVICE_PUBLISHES, ENROLL_RESULT, WIPE_DONE)


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


# -- the access rules: one table, rendered for the broker (appliance.broker.config) ---------
SELF = "%u"  # in a rule: the client's own identity (its certificate's CN, its MQTT username)
PUBLISH, SUBSCRIBE = "publish", "subscribe"
SHARE_PREFIX = "$share/"

# role -> (access, filter). PUBLISH: may publish on the topics the filter matches. SUBSCRIBE:
# may subscribe with this filter or a narrower one, and receives what it matches. A shared
# subscription is only granted by a rule written with its "$share/<group>/" prefix, so no
# other rule - a device's own topics, an auditor's "#" - can ever let a client join the
# matchers' group and take its turn of every door's requests. Everything not listed is
# refused: PUBLISH (PUBACK 135), SUBSCRIBE (SUBACK 135) and delivery.
RIGHTS: dict[str, tuple[tuple[str, str], ...]] = {
    "device": (
        *((PUBLISH, device_topic(SELF, kind)) for kind in DEVICE_PUBLISHES),
        *((SUBSCRIBE, device_topic(SELF, kind)) for kind in DEVICE_SUBSCRIBES),
        (PUBLISH, device_topic(SELF, ENROLL_RESULT)),
        (SUBSCRIBE, device_topic(SELF, ENROLL_CAPTURE)),
        (SUBSCRIBE, device_topic(SELF, WIPE)),
        (PUBLISH, device_topic(SELF, WIPE_DONE)),
    ),
    "matcher": (
        *((SUBSCRIBE, shared(all_devices(kind))) for kind in DEVICE_PUBLISHES),
        (PUBLISH, all_devices(DECISION)),
        (PUBLISH, all_devices(SYNC)),
        (PUBLISH, ENROLLMENT_EVENTS),
        (PUBLISH, all_devices(WIPE)),  # only a matcher identity may order a door wiped
        (SUBSCRIBE, all_devices(WIPE_DONE)),  # not shared: the revoking command waits for it
    ),
    # auditors see every payload on the wire and publish nothing
    "auditor": ((SUBSCRIBE, f"{PREFIX}/#"),),
    # third-party systems: pseudonymous, masked enrollment events only
    "integration": ((SUBSCRIBE, ENROLLMENT_EVENTS),),
    # the web console's process: asks doors for enrollment captures and reads their answers,
    # nothing else (no requests, decisions, sync or events)
    "console": ((PUBLISH, all_devices(ENROLL_CAPTURE)), (SUBSCRIBE, all_devices(ENROLL_RESULT))),
    # a site broker's bridge to the central broker: no rule of its own; for each door of its
    # site it may forward BRIDGE_UP and receive BRIDGE_DOWN (appliance.broker.bridge.rights)
    "bridge": (),
}
# what a bridge carries for a door: its requests, events and sync acks (and a wipe's
# confirmation) up to the centre; decisions, deltas and wipe orders down. Enrollment
# captures are not bridged: a console asks doors on its own site's broker.
BRIDGE_UP = (*DEVICE_PUBLISHES, WIPE_DONE)
BRIDGE_DOWN = (DECISION, SYNC, WIPE)


def rights_of(role: str, identity: str) -> tuple[tuple[str, str], ...]:
    """The rules of one identity: its role's, with ``%u`` replaced by its name (none for an
    unknown role)."""
    return tuple((access, rule.replace(SELF, identity)) for access, rule in RIGHTS.get(role, ()))


def unshared(topic_filter: str) -> str:
    """The filter a shared subscription matches with: without its ``$share/<group>/``."""
    if topic_filter.startswith(SHARE_PREFIX):
        return topic_filter.split("/", 2)[2]
    return topic_filter


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching: ``+`` one level, ``#`` the rest; a wildcard in the first level never
    matches a ``$`` topic (MQTT-4.7.2-1)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    wanted, levels = topic_filter.split("/"), topic.split("/")
    for at, level in enumerate(wanted):
        if level == "#":
            return True
        if at >= len(levels) or (level != "+" and level != levels[at]):
            return False
    return len(levels) == len(wanted)


def may_publish(role: str, identity: str, topic: str) -> bool:
    """Whether ``identity`` (of ``role``) may publish on ``topic``: the question a receiver asks
    of what arrives, whatever the broker let through."""
    return any(access == PUBLISH and matches(rule, topic) for access, rule in rights_of(role, identity))


def may_receive(role: str, identity: str, topic: str) -> bool:
    """Whether ``identity`` (of ``role``) may be delivered a message published on ``topic``."""
    return any(access == SUBSCRIBE and matches(unshared(rule), topic) for access, rule in rights_of(role, identity))
