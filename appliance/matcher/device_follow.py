"""Doors provisioned while a replica runs: ``DeviceFollower`` looks at the node directory
(``directory.json``) every ``DIRECTORY_RECHECK_S`` and, when a door was added or re-keyed,
lets every handler's opener take its envelopes, the gate know it and the router subscribe to
its topics - no replica restart. The broker still needs its own restart for the new door's
rights (its access rules are read at start: docs/deployment.md). A door removed from the
directory is not dropped here: revocation reaches the replica through the provisioning
checks (``SiteChecks``) within a second, and a removed door's envelopes are refused by them."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from appliance.errors import ApplianceError
from appliance.filecache import file_stamp
from appliance.matcher.gate import Gate
from appliance.matcher.service import MatcherService
from appliance.protocol.directory import NodeDirectory
from appliance.security.envelope import Opener
from appliance.workers import Ticker

log = logging.getLogger(__name__)

DIRECTORY_RECHECK_S = 2.0  # a door provisioned while the replica runs is heard within this (after the broker's restart)


class DeviceFollower:
    def __init__(self, name: str, directory: NodeDirectory, openers: Sequence[Opener], gate: Gate,
                 service: MatcherService, stats: Counter[str], period_s: float = DIRECTORY_RECHECK_S):
        self.name, self.directory, self.openers = name, directory, tuple(openers)
        self.gate, self.service, self.stats = gate, service, stats
        # the first look reads the file: it may have changed since ``directory`` was loaded
        self._stamp: tuple[int, int, int] | None = None
        self.ticker = Ticker(f"{name}-directory", period_s, self.check)

    def start(self) -> None:
        self.ticker.start()

    def stop(self) -> None:
        self.ticker.stop()

    def check(self) -> list[str]:
        """Take up the doors added or re-keyed since the last look; their names."""
        stamp = file_stamp(self.directory.path)
        if stamp == self._stamp:
            return []
        self._stamp = stamp  # a broken version is reported once, not every look
        try:
            changed = self.directory.reload()
        except ApplianceError as exc:  # keep serving the doors known; the next version is read again
            log.warning("%s: node directory not re-read: %s", self.name, exc)
            return []
        if not changed:
            return []
        for opener in self.openers:
            opener.add_senders(changed)
        if self.gate.devices is not None:
            self.gate.devices = frozenset(peer.node_id for peer in self.directory.devices())
        names = sorted(peer.node_id for peer in changed)
        self.service.follow_devices(names)
        self.stats["devices_followed"] += len(names)
        log.info("%s: now serving %s (node directory changed)", self.name, ", ".join(names))
        return names

