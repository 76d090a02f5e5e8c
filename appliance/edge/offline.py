"""Wiring of a door's offline pieces (cache, outbox, sync client, pump, decider) on one MQTT
connection: what ``appliance edge`` runs, and what the sync benchmark and the durability
tests (their camera-less agent, ``tests/offline/agent.py``) open, kill and reopen.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.config import OfflineConfig
from appliance.edge.cache_decider import CacheDecider
from appliance.edge.link import MatcherLink
from appliance.edge.outbox_pump import OutboxPump
from appliance.edge.sync_client import SyncClient
from appliance.edge.wipe import DoorWipe, WipeGate, refuse_if_wiped
from appliance.errors import ApplianceError
from appliance.protocol import messages, topics
from appliance.security.envelope import MessageType
from appliance.security.keys import CACHE_DB, OUTBOX_DB, FileKeyProvider, ensure_keys
from appliance.stores.device import DeviceCache, Outbox

CACHE_FILE, OUTBOX_FILE = "cache.db", "outbox.db"


@dataclass
class OfflineDoor:
    link: MatcherLink
    cache: DeviceCache
    outbox: Outbox
    sync: SyncClient
    pump: OutboxPump
    decider: WipeGate  # the CacheDecider, behind the remote wipe's gate
    wipe: DoorWipe

    def emit(self, kind: str, message: messages.Message) -> None:
        """The daemon's ``emit``: events and alarms through the outbox, telemetry best effort."""
        if kind in (topics.EVENT, topics.ALARM):
            self.pump.submit(kind, message)
        elif self.link.online:
            self.link.send(kind, message, MessageType.TELEMETRY)

    def close(self) -> None:
        self.sync.stop()
        self.pump.stop()
        self.link.close()
        self.cache.close()
        self.outbox.close()


def device_folder(site, device: str) -> Path:
    return site.folder / "nodes" / device


def open_door(site, device: str, offline: OfflineConfig, threshold: float, replay_window_s: float = 120.0,
              connect: bool = True) -> OfflineDoor:
    folder = device_folder(site, device)
    provider = FileKeyProvider(folder)
    refuse_if_wiped(folder, ((folder / CACHE_FILE, provider, CACHE_DB), (folder / OUTBOX_FILE, provider, OUTBOX_DB)))
    ensure_keys(provider, (CACHE_DB, OUTBOX_DB))
    keys = site.device_keys(device)
    mqtt = site.mqtt(device, will_topic=topics.device_topic(device, topics.AVAILABILITY))
    link = MatcherLink(device, mqtt, keys, site.directory, replay_window_s=replay_window_s)
    cache = DeviceCache.open(folder / CACHE_FILE, provider)
    outbox = Outbox.open(folder / OUTBOX_FILE, provider)
    pump = OutboxPump(link, outbox, offline.outbox_max_events, offline.outbox_window, offline.outbox_resend_s)
    sync = SyncClient(link, cache, keys, site.directory, offline.digest_every_s, on_outbox_ack=pump.on_ack,
                      replay_window_s=replay_window_s)

    def halt() -> None:  # a remote wipe stops every worker that uses the stores first
        sync.stop()
        pump.stop()

    wipe = DoorWipe(link, keys, site.directory, folder, provider, (cache, outbox), halt, replay_window_s)
    decider = WipeGate(CacheDecider(link, sync, cache, offline, threshold, pump), wipe)
    door = OfflineDoor(link, cache, outbox, sync, pump, decider, wipe)
    sync.start()
    pump.start()
    if connect:
        try:
            link.connect()
        except ApplianceError:  # offline at start: decide from the cache while paho keeps trying
            link.connect(wait=False)
    return door

