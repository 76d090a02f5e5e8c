"""Building a matcher replica: ``compose`` wires the handlers from explicit pieces (tests,
benchmarks), ``build`` makes the whole service from the typed configuration (``appliance
matcher``).

A replica always answers match requests. With the central stores and a sync store it is a
full replica: it serves device sync, keeps its gallery on the revision stream, records
outbox events exactly once and announces changes. Without them (benchmarks, the transport
tests) events and alarms are only counted and audited.

Every handler of a replica shares one ``Gate`` (``matcher.gate``): the per-device budgets
(``limits``, from ``[matcher]`` in the configuration), the check that the sender may send
what it sent (``may_send``: enrolled, not revoked, its topic) for every message type, and
the refusals summed up per device and window; ``device_allowed`` is the matching-mode
check before a search (and the sender check when no ``may_send`` is given). The gallery's
quarantined templates (``loaded``) are in ``Matcher.quarantined`` and the
``templates_quarantined`` stat.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from appliance.config import Config, registry_for, threshold_for
from appliance.config.mode_tables import DoorModeConfig
from appliance.matcher.deletions import DeletionConfirmations
from appliance.matcher.device_follow import DeviceFollower
from appliance.matcher.access_site import SiteAccess
from appliance.matcher.credential_requests import CredentialRequestHandler
from appliance.matcher.eligibility import Profiles
from appliance.matcher.events import EventAuditor, EventRecorder
from appliance.matcher.device_limits import Limits
from appliance.matcher.gate import Gate, any_mode
from appliance.matcher.site_checks import SiteChecks
from appliance.matcher.loaded import LoadedGallery, load_gallery
from appliance.matcher.replica import POLL_S, ReplicaFollower
from appliance.matcher.replica_io import Auditor, Courier
from appliance.matcher.requests import RequestHandler
from appliance.matcher.revisions import SyncEngine
from appliance.matcher.service import MatcherService, Route
from appliance.matcher.site_policy import central_allowed
from appliance.matcher.sync_requests import SyncHandler
from appliance.matcher.sync_store import SyncStore, open_sync_store
from appliance.matching import FailureTracker
from appliance.matching.credentials import CredentialJudge
from appliance.packs import ModelPack
from appliance.protocol.directory import NodeDirectory
from appliance.security.envelope import NodeKeys
from appliance.security.roles import Principal, Role
from appliance.stores.protected import ProtectedData, key_provider
from appliance.transport.mqtt import MqttSettings


@dataclass
class Matcher:
    """One composed replica: the router, and the parts a caller may look at."""

    service: MatcherService
    loaded: LoadedGallery
    requests: RequestHandler
    store: SyncStore | None = None
    revisions: SyncEngine | None = None
    confirmations: DeletionConfirmations | None = None
    follower: ReplicaFollower | None = None
    devices: DeviceFollower | None = None  # doors provisioned while it runs (``matcher.device_follow``)

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def stats(self) -> Counter[str]:
        return self.service.stats

    @property
    def endpoint(self):
        return self.service.endpoint

    @property
    def queue_depth(self) -> int:
        return self.service.queue_depth

    @property
    def quarantined(self) -> int:
        """Subjects whose template could not be read and are not served (for the heartbeat)."""
        return len(self.loaded.quarantined)

    @property
    def muted_devices(self) -> dict[str, int]:
        """Devices muted for flooding now, with their mutes in a row (for the heartbeat)."""
        return self.service.gate.muted_now()

    def start(self) -> "Matcher":
        self.service.start()
        if self.devices is not None:
            self.devices.start()
        return self

    def stop(self) -> None:
        if self.devices is not None:
            self.devices.stop()
        self.service.stop()


def compose(name: str, mqtt: MqttSettings, keys: NodeKeys, directory: NodeDirectory, loaded: LoadedGallery,
            threshold: float, *, data: ProtectedData | None = None, sync_store: SyncStore | None = None,
            snapshot_after: int = 5000, group_of: Callable[[str], str] | None = None,
            devices: Callable[[], list[str]] | None = None, poll_s: float = POLL_S, replay_window_s: float = 120.0,
            liveness_check: Callable[[str, dict], bool] | None = None,
            device_allowed: Callable[[str, str], bool] | None = None,
            tracker: FailureTracker | None = None, limits: Limits | None = None,
            may_send: Callable[[str, str], bool] | None = None, site_tz: str = "UTC",
            door_mode: DoorModeConfig | None = None, request_gather_s: float = 0.0) -> Matcher:
    """A replica named ``name`` (its MQTT identity; it signs under it with the matcher
    ``keys``). ``sync_store`` (with ``data``, the central stores) makes it a full replica.
    ``limits``: the per-device budgets (default: the configuration's defaults);
    ``request_gather_s``: the request worker's gather window (``[matcher] request_gather_ms``)."""
    if sync_store is not None and data is None:
        raise ValueError("a syncing matcher needs the central protected data")
    stats: Counter[str] = Counter()
    stats["templates_quarantined"] = len(loaded.quarantined)
    courier = Courier(name, keys, directory)
    audit = Auditor(name, data.audit if data is not None else None)
    gate = Gate(name, limits or Limits(), audit, stats, may_send or any_mode(device_allowed),
                devices=frozenset(peer.node_id for peer in directory.devices()))
    requests = RequestHandler(name, keys, directory, loaded, threshold, courier, audit, stats, replay_window_s,
                              liveness_check, device_allowed, gate, request_gather_s)
    if tracker is not None:
        requests.engine.tracker = tracker
    routes: list[Route] = [requests.route]
    if sync_store is None:
        events = EventAuditor(name, keys, directory, audit, stats, replay_window_s, gate)
        service = MatcherService(name, mqtt, [*routes, events.route], courier, stats, gate)
        return Matcher(service, loaded, requests,
                       devices=DeviceFollower(name, directory, [requests.opener, events.opener], gate, service, stats))
    # its decisions' entries wait in memory while the disk is full: room kept for them at a stop
    data.audit.reserve.ensure()
    principal = Principal(name, Role.OPERATOR, device=name)
    gallery = loaded.gallery
    access = SiteAccess(sync_store, site_tz)  # site_tz: config [access] timezone (docs/access.md)
    requests.access = access
    profiles = Profiles(data.identity, sync_store.groups, principal, access)
    engine = SyncEngine(data, profiles, (gallery.pack_id, gallery.pack_version), gallery.dimension, snapshot_after,
                        principal)
    confirmations = DeletionConfirmations(data, sync_store)
    devices = devices or (lambda: [peer.node_id for peer in directory.devices()])
    follower = ReplicaFollower(name, data, sync_store, profiles, loaded, courier, keys, devices, stats, principal,
                               audit)
    events = EventRecorder(name, keys, directory, sync_store, courier, audit, stats, gate, data.audit, access)
    sync = SyncHandler(name, keys, directory, engine, confirmations, follower, courier, stats, group_of,
                       device_allowed, poll_s, replay_window_s, gate,
                       central_allowed=lambda: central_allowed(sync_store))
    modes = door_mode or DoorModeConfig()  # card and PIN passes: the PIN attempt limit (docs/door-modes.md)
    credentials = CredentialRequestHandler(name, keys, directory, data.identity, principal, courier, audit, stats, gate,
                                           CredentialJudge(modes.pin_attempts, modes.pin_lockout_s), requests.admit,
                                           replay_window_s)
    service = MatcherService(name, mqtt, [*routes, events.route, sync.route, credentials.route], courier, stats, gate)
    openers = [requests.opener, events.opener, sync.opener, credentials.opener]
    return Matcher(service, loaded, requests, sync_store, engine, confirmations, follower,
                   DeviceFollower(name, directory, openers, gate, service, stats))


@dataclass
class MatcherApp:
    """A replica built from the configuration, with the stores it holds open."""

    matcher: Matcher
    data: ProtectedData
    pack: ModelPack

    @property
    def name(self) -> str:
        return self.matcher.name

    def start(self) -> None:
        self.matcher.start()

    def stop(self) -> None:
        self.matcher.stop()

    def close(self) -> None:
        """Stop (again: harmless) and close the stores."""
        self.matcher.stop()
        if self.matcher.store is not None:
            self.matcher.store.close()
        self.data.close()


def build(config: Config, site) -> MatcherApp:
    """The replica ``config.matcher.name`` of the site in ``site`` (an ``appliance.site.Site``:
    its PKI, node directory and central stores): the configured embedder pack and its
    threshold (no model is loaded), the site's policies for device groups and matching
    modes, and the configured liveness level for the matcher's own judgement."""
    from appliance.matcher.liveness import second_liveness_judgement
    from appliance.ops import provisioning
    from appliance.packs.defaults import check_site_use

    name = config.matcher.name
    registry = registry_for(config)
    pack = registry.get(config.models.embedder)
    check_site_use(config.site.use, pack, registry, "matcher")  # before any store is opened
    threshold = threshold_for(config, pack.id, pack.recommended_threshold)
    pki = site.broker.pki
    directory = site.directory  # one object: the handlers, the courier and the liveness judge see the same doors
    checks = SiteChecks(pki)  # provisioning's checks, remembered while its files are unchanged
    data = site.protected_data(config)
    store = None
    try:
        loaded = load_gallery(data, Principal(name, Role.OPERATOR), pack)
        store = open_sync_store(data, key_provider(data.security, data.root))
        matcher = compose(
            name, site.mqtt(name), data.node, directory, loaded, threshold, data=data, sync_store=store,
            snapshot_after=config.offline.snapshot_after,
            group_of=lambda device: getattr(provisioning.policy(pki, device), "group", "default"),
            replay_window_s=config.security.replay_window_s,
            liveness_check=second_liveness_judgement(config.liveness.level, directory),
            device_allowed=checks.device_allowed, may_send=checks.may_send,
            limits=Limits.from_config(config.matcher), site_tz=config.access.timezone, door_mode=config.door_mode,
            request_gather_s=config.matcher.request_gather_s)
    except BaseException:
        if store is not None:
            store.close()
        data.close()
        raise
    return MatcherApp(matcher, data, pack)
