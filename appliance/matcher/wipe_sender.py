"""The central side of a remote wipe: order a door being revoked to destroy its cache, and wait.

``provisioning.revoke_device`` calls a ``WipeSender`` (its ``send_wipe``) before the
certificate is revoked: after the broker restart the door can no longer receive anything.
The sender connects under a matcher identity (the broker lets only matchers publish on a
door's ``wipe`` topic, ``topics.RIGHTS``) with a client id of its own, so the replica running
under that identity keeps its session. The order is sealed to the door and signed as the
matcher (``MATCHER_NODE``: the door's opener knows only matcher replicas) with the central
keys, which must be the ones the node directory lists for the matcher - else the door would
refuse it and the sender says so instead of sending.

A confirmation counts only when it opens (signed by that door, fresh, not replayed), arrived
on that door's own ``wipe-done`` topic and answers the order sent. The sender waits at most
``timeout_s`` (``[ops] wipe_confirm_s``, 10 s by default: a door stops its pass and deletes two
files in well under that); a door that is offline or does not answer does not hold up the revocation:
``confirmed`` stays False, ``detail`` says why, and the caller records "wipe not confirmed"
in the audit entry of the revocation (the door, when it comes back, can no longer connect or
sync; its cache stays encrypted under a key only that door holds).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from pathlib import Path

from appliance.config import Config
from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import messages, topics
from appliance.protocol.directory import DEVICE, MATCHER_NODE, NodeDirectory
from appliance.protocol.inbound import open_on_topic
from appliance.protocol.wipe_messages import WipeDone, WipeOrder
from appliance.security.envelope import MessageType, NodeKeys, Opener, ReplayGuard, Sealer
from appliance.transport.mqtt import Incoming, MqttEndpoint, MqttSettings, settings_for

log = logging.getLogger(__name__)

MATCHER_ROLE = "matcher"
NOT_SENT, UNCONFIRMED, CONFIRMED = "wipe not sent", "wipe not confirmed", "wipe confirmed"


class WipeSender:
    """``send_wipe`` of ``revoke_device``: one order, one bounded wait; ``confirmed`` and
    ``detail`` say how it went (for the audit entry), as ``BrokerRestart`` does for the restart."""

    def __init__(self, pki, directory_file: Path, central: NodeKeys, identity: str, host: str, port: int,
                 requested_by: str, replay_window_s: float, timeout_s: float) -> None:
        self.pki, self.directory_file, self.central = pki, Path(directory_file), central
        self.identity, self.host, self.port = identity, host, port
        self.requested_by, self.replay_window_s, self.timeout_s = requested_by, replay_window_s, timeout_s
        self.confirmed = False
        self.detail = f"{NOT_SENT}: not an active door"  # revoke_device wipes active devices only
        self.answer: WipeDone | None = None
        self._done = threading.Event()
        self._expected: tuple[str, str] = ("", "")  # (device, wipe id) being waited for
        self._opener: Opener | None = None

    def __call__(self, device: str) -> None:
        """Send the order to ``device`` and wait for its confirmation; ApplianceError (after
        setting ``detail``) when it could not be sent or was not confirmed in time."""
        try:
            directory, keys, settings = self._prepare(device)
        except ApplianceError as exc:
            self.detail = f"{NOT_SENT}: {exc.detail}"
            raise
        order = WipeOrder(messages.new_id(), device, time.time(), self.requested_by)
        self._expected, self._done = (device, order.wipe_id), threading.Event()
        self._opener = Opener(keys, directory.devices(), window_s=self.replay_window_s,
                              guard=ReplayGuard(not_before=time.time()))
        endpoint = MqttEndpoint(settings, on_message=self._on_message,
                                subscriptions=(topics.device_topic(device, topics.WIPE_DONE),))
        try:
            endpoint.connect()  # the subscription goes before the order on this one connection
            sealed = Sealer(keys).seal(directory.get(device), MessageType.WIPE, order.encode())
            endpoint.publish(topics.device_topic(device, topics.WIPE), sealed)
        except ApplianceError as exc:
            endpoint.close(announce_offline=False)
            self.detail = f"{NOT_SENT}: {exc.code.title}"  # no host address: the audit entry refuses numbers
            raise
        try:
            if not self._done.wait(self.timeout_s):
                self.detail = f"{UNCONFIRMED}: {device} did not answer within {self.timeout_s:g} s (offline?)"
                raise ApplianceError(ErrorCode.REQUEST_TIMEOUT, self.detail)
        finally:
            endpoint.close(announce_offline=False)
        answer = self.answer
        self.confirmed = bool(answer and answer.key_destroyed)
        files = ", ".join(answer.files_removed) if answer and answer.files_removed else "none left"
        self.detail = (f"{CONFIRMED if self.confirmed else UNCONFIRMED}: {device} "
                       f"{'destroyed its cache key' if self.confirmed else 'still holds a cache key'}; "
                       f"files removed: {files}")

    def _prepare(self, device: str) -> tuple[NodeDirectory, NodeKeys, MqttSettings]:
        """The directory, the keys signing as the matcher and the MQTT settings, or PKI_ERROR."""
        directory = NodeDirectory.load(self.directory_file)
        if directory.roles.get(device) != DEVICE:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"{device!r} has no envelope keys in the node directory")
        if MATCHER_NODE not in directory.peers or (directory.get(MATCHER_NODE).signing.public_bytes_raw()
                                                   != self.central.signing.public_key().public_bytes_raw()):
            raise ApplianceError(ErrorCode.PKI_ERROR, "this host's central keys are not the matcher's in the node "
                                                      "directory: the door would refuse the order")
        found = self.pki.identities().get(self.identity)
        if found is None or found.revoked or found.role != MATCHER_ROLE:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"no active matcher identity {self.identity!r} to send it "
                                                      "([matcher] name)")
        settings = settings_for(self.pki, self.identity, self.host, self.port)
        settings = dataclasses.replace(settings, client_id=f"{self.identity}-wipe-{uuid.uuid4().hex[:8]}")
        return directory, self.central.renamed(MATCHER_NODE), settings

    def _on_message(self, incoming: Incoming) -> None:
        device, wipe_id = self._expected
        try:
            inbound = open_on_topic(self._opener, incoming.topic, incoming.payload, expect=MessageType.WIPE_DONE)
            answer = messages.decode(inbound.payload, WipeDone)
        except ApplianceError as exc:  # EnvelopeRejected included
            log.warning("dropped a wipe confirmation on %s: %s", incoming.topic, exc)
            return
        if inbound.device != device or answer.device_id != device or answer.wipe_id != wipe_id:
            log.warning("dropped a wipe confirmation of %s for order %s", answer.device_id, answer.wipe_id)
            return
        self.answer = answer
        self._done.set()


def for_host(pki, directory_file: Path, central: NodeKeys, config: Config, requested_by: str) -> WipeSender:
    """The sender of this central host (the CLI's and the console's): the node directory
    ``directory_file``, the matcher identity ``[matcher] name``, the broker at ``[ops]
    broker_host``/``broker_port``, the envelope time window of ``[security]``, the wait of ``[ops]
    wipe_confirm_s``."""
    return WipeSender(pki, directory_file, central, config.matcher.name, config.ops.broker_host,
                      config.ops.broker_port, requested_by, config.security.replay_window_s,
                      config.ops.wipe_confirm_s)
