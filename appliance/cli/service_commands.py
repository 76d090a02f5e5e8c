"""The long-running services: ``appliance matcher`` and ``appliance edge``.

Both take a site folder (PKI, node keys and the public-key directory made by provisioning;
see ``appliance.site``), tell systemd when they are ready and ping its watchdog from their
main loop, and stop cleanly on SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from appliance import paths
from appliance.cli.common import config_from, pipeline_from
from appliance.config import LIVENESS_LEVELS, MATCHING_MODES, Config, check_service, with_overrides
from appliance.ops import notify
from appliance.site import Site



def service_config(args: argparse.Namespace, service: str) -> Config:
    """The configuration with this command's flags applied, checked as ``config check
    --service`` checks it: a unit needs only ``--config``."""
    config = config_from(args)
    if service == "edge":
        config = with_overrides(
            config,
            device={"name": args.device, "source": args.source, "fps": args.fps, "cool_down_s": args.cool_down},
            liveness={"level": args.liveness}, offline={"mode": args.mode})
    else:
        config = with_overrides(config, matcher={"name": args.name})
    return check_service(config, service)


def register(sub: argparse._SubParsersAction) -> None:
    matcher = sub.add_parser("matcher", help="run the central matcher service")
    _site_options(matcher)
    matcher.add_argument("--name", help="this replica's MQTT identity (default: matcher.name)")
    matcher.set_defaults(handler=cmd_matcher)

    edge = sub.add_parser("edge", help="run the edge daemon of one door")
    _site_options(edge)
    edge.add_argument("--device", help="this device's identity (default: device.name)")
    edge.add_argument("--source", help="picamera2, a camera index, a URL, a video file or an image folder "
                      "(default: device.source)")
    edge.add_argument("--fps", type=float, help="replay rate for files and folders (default: device.fps)")
    edge.add_argument("--passes", type=int, help="stop after this many passes")
    edge.add_argument("--liveness", help=f"override liveness.level ({', '.join(LIVENESS_LEVELS)})")
    edge.add_argument("--cool-down", type=float, help="seconds to ignore frames after a pass (default: device.cool_down_s)")
    edge.add_argument("--mode", help=f"override offline.mode ({', '.join(MATCHING_MODES)})")
    edge.set_defaults(handler=cmd_edge)


def _site_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", help="site folder: pki/, nodes/, central/, directory.json (default: $APPLIANCE_DATA_DIR)")
    parser.add_argument("--host", help="broker host (default: ops.broker_host)")
    parser.add_argument("--port", type=int, help="broker port (default: ops.broker_port)")


def _site(args: argparse.Namespace, config) -> tuple[Site, str, int]:
    folder = Path(args.site) if args.site else paths.data_dir()
    port = args.port or config.ops.broker_port
    host = args.host or config.ops.broker_host
    return Site(folder, port=port, host=host), host, port


def _status_file(config: Config, service: str, name: str) -> Path:
    return notify.status_path(config.ops.status_dir, paths.data_dir(), service, name)


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def cmd_matcher(args: argparse.Namespace) -> int:
    from appliance.matcher.liveness import second_liveness_judgement
    from appliance.ops import provisioning
    from appliance.matcher.service import load_gallery
    from appliance.matcher.sync import SyncingMatcher, open_sync_store
    from appliance.stores.protected import key_provider
    from appliance.security.roles import Principal, Role

    config = service_config(args, "matcher")
    name = config.matcher.name
    site, host, port = _site(args, config)
    stop = _stop_event()
    pipeline = pipeline_from(args, config)  # only for the pack and threshold; no models loaded
    data = site.protected_data(config)
    try:
        loaded = load_gallery(data, Principal(name, Role.OPERATOR), pipeline.embedder_pack)
        mqtt = site.mqtt(name)
        sync_store = open_sync_store(data, key_provider(data.security, data.root))
        service = SyncingMatcher(name, mqtt, data.node, site.directory, loaded, pipeline.threshold, data=data,
                                 sync_store=sync_store, snapshot_after=config.offline.snapshot_after,
                                 group_of=lambda device: getattr(provisioning.policy(site.broker.pki, device),
                                                                 "group", "default"),
                                 replay_window_s=config.security.replay_window_s,
                                 liveness_check=second_liveness_judgement(config.liveness.level, site.directory),
                                 device_allowed=lambda device, mode: provisioning.is_allowed(site.broker.pki, device, mode))
        service.start()
        notify.ready(f"{len(loaded.gallery)} subjects")
        print(f"{name}: ready, {len(loaded.gallery)} enrolled subjects", flush=True)
        watchdog = notify.Watchdog(status_file=_status_file(config, "matcher", name))
        while not stop.wait(1.0):
            watchdog.heartbeat(model_loaded=True, model=pipeline.embedder_pack.label,
                               broker=service.endpoint.connected.is_set(), queue=service.queue_depth)
        notify.stopping()
        service.stop()
        watchdog.stopped()
        print(f"{name}: stopped ({dict(service.stats)})", flush=True)
    finally:
        data.close()
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    from appliance.capture.sources import open_source
    from appliance.edge.daemon import EdgeDaemon, EdgeSettings
    from appliance.edge.hardware import ConsoleDisplay
    from appliance.edge.offline import open_door
    from appliance.liveness.evidence import Ed25519Signer
    from appliance.liveness.checker import LivenessChecker

    config = service_config(args, "edge")
    device = config.device
    site, host, port = _site(args, config)
    stop = _stop_event()
    pipeline = pipeline_from(args, config)
    pipeline.load()
    liveness = LivenessChecker(config.liveness, pipeline.registry) if config.liveness.level != "off" else None
    # the door's cache, outbox, sync client and decider share one MQTT connection
    door = open_door(site, device.name, config.offline, pipeline.threshold, config.security.replay_window_s)
    watchdog = notify.Watchdog(status_file=_status_file(config, "edge", device.name))
    settings = EdgeSettings(device.name, burst_frames=max(3, config.liveness.burst_frames), cool_down_s=device.cool_down_s)
    signer = Ed25519Signer(site.device_keys(device.name).signing.private_bytes_raw(), key_id=device.name)
    daemon = EdgeDaemon(
        settings, pipeline, door.decider, liveness=liveness, display=ConsoleDisplay(), emit=door.emit,
        signer=signer, calibration_id=liveness.calibration_id if liveness else "",
        heartbeat=lambda: watchdog.heartbeat(model_loaded=True, model=pipeline.embedder_pack.label,
                                             broker=door.link.online, cache_revision=door.cache.revision,
                                             cache_synced_at=door.cache.confirmed_at, outbox=door.outbox.depth(),
                                             **door.decider.status.as_dict()),
    )
    source = open_source(device.source, fps=device.fps, loop=device.loop)
    notify.ready("camera open")
    status = door.decider.status
    print(f"{device.name}: ready (liveness {config.liveness.level}, mode {config.offline.mode}, "
          f"matcher {'reachable' if status.matcher_reachable else 'unreachable'}, cache {status.cache})", flush=True)
    shown = 0
    try:
        for _ in daemon.run_iter(source.frames(), stop, args.passes):
            for record in daemon.passes[shown:]:
                name = record.display_name or "-"
                print(f"{device.name}: {record.outcome.upper():11s} {name:12s} {record.reason:16s} "
                      f"{record.latency_ms:6.0f} ms", flush=True)
            shown = len(daemon.passes)
    finally:
        notify.stopping()
        source.close()
        door.close()
        pipeline.close()
        watchdog.stopped()
    print(f"{device.name}: stopped after {len(daemon.passes)} passes", flush=True)
    return 0
