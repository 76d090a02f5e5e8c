"""Wiring of a door's offline pieces (cache, outbox, sync client, pump, decider) on one MQTT
connection, for ``appliance edge`` and for a camera-less agent (``python -m
appliance.edge.offline``) that the durability tests and the sync benchmark run and kill.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.config import OfflineConfig
from appliance.edge.cache_decider import CacheDecider
from appliance.errors import ApplianceError
from appliance.edge.link import MatcherLink
from appliance.edge.outbox_pump import OutboxPump
from appliance.edge.sync_client import SyncClient
from appliance.protocol import messages, topics
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
    decider: CacheDecider

    def emit(self, kind: str, message: messages.Message) -> None:
        """The daemon's ``emit``: events and alarms through the outbox, telemetry best effort."""
        if kind in (topics.EVENT, topics.ALARM):
            self.pump.submit(kind, message)
        else:
            from appliance.security.envelope import MessageType

            if self.link.online:
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
    ensure_keys(provider, (CACHE_DB, OUTBOX_DB))
    keys = site.device_keys(device)
    mqtt = site.mqtt(device, will_topic=topics.device_topic(device, topics.AVAILABILITY))
    link = MatcherLink(device, mqtt, keys, site.directory, replay_window_s=replay_window_s)
    cache = DeviceCache.open(folder / CACHE_FILE, provider)
    outbox = Outbox.open(folder / OUTBOX_FILE, provider)
    pump = OutboxPump(link, outbox, offline.outbox_max_events, offline.outbox_window, offline.outbox_resend_s)
    sync = SyncClient(link, cache, keys, site.directory, offline.digest_every_s, on_outbox_ack=pump.on_ack,
                      replay_window_s=replay_window_s)
    decider = CacheDecider(link, sync, cache, offline, threshold, pump)
    door = OfflineDoor(link, cache, outbox, sync, pump, decider)
    sync.start()
    pump.start()
    if connect:
        try:
            link.connect()
        except ApplianceError:  # offline at start: decide from the cache while paho keeps trying
            link.connect(wait=False)
    return door


def main(argv: list[str] | None = None) -> int:
    """A camera-less door: syncs its cache and drains its outbox; optionally writes events.
    Prints one JSON line per state change so a test can follow (and kill) it."""
    from appliance.site import Site

    parser = argparse.ArgumentParser(prog="python -m appliance.edge.offline")
    parser.add_argument("--site", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--events", type=int, default=0, help="write this many events (one commit each)")
    parser.add_argument("--seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    site = Site(args.site, port=args.port)
    door = open_door(site, args.device, OfflineConfig(digest_every_s=3600), threshold=0.5)
    deadline = time.monotonic() + args.seconds
    last = None
    written = 0
    try:
        while time.monotonic() < deadline:
            if written < args.events:
                event = messages.Event(messages.new_id(), args.device, "pass", time.time(), {"n": written})
                door.pump.submit(topics.EVENT, event)
                written += 1
                print(json.dumps({"committed": event.event_id}), flush=True)  # after COMMIT returned
                continue
            state = (door.cache.revision, door.sync.current.is_set(), door.outbox.depth())
            if state != last:
                print(json.dumps({"revision": state[0], "current": state[1], "depth": state[2]}), flush=True)
                last = state
            threading.Event().wait(0.05)
    finally:
        door.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
