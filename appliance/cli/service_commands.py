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
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops import notify
from appliance.site import Site

STATUS_DIR = "run"


def register(sub: argparse._SubParsersAction) -> None:
    matcher = sub.add_parser("matcher", help="run the central matcher service")
    _site_options(matcher)
    matcher.add_argument("--name", default="matcher-1", help="this replica's MQTT identity")
    matcher.set_defaults(handler=cmd_matcher)

    edge = sub.add_parser("edge", help="run the edge daemon of one door")
    _site_options(edge)
    edge.add_argument("--device", required=True, help="this device's identity")
    edge.add_argument("--source", default="0", help="picamera2, a camera index, a URL, a video file or an image folder")
    edge.add_argument("--fps", type=float, default=0.0, help="replay rate for files and folders")
    edge.add_argument("--passes", type=int, help="stop after this many passes")
    edge.add_argument("--liveness", help="override liveness.level (off, passive, passive+motion, active)")
    edge.add_argument("--cool-down", type=float, default=2.0, help="seconds to ignore frames after a pass")
    edge.add_argument("--mode", choices=("central", "local", "local-first"), help="override offline.mode")
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

    config = config_from(args)
    site, host, port = _site(args, config)
    stop = _stop_event()
    pipeline = pipeline_from(args, config)  # only for the pack and threshold; no models loaded
    data = site.protected_data(config)
    try:
        loaded = load_gallery(data, Principal(args.name, Role.OPERATOR), pipeline.embedder_pack)
        mqtt = site.mqtt(args.name)
        sync_store = open_sync_store(data, key_provider(data.security, data.root))
        service = SyncingMatcher(args.name, mqtt, data.node, site.directory, loaded, pipeline.threshold, data=data,
                                 sync_store=sync_store, snapshot_after=config.offline.snapshot_after,
                                 group_of=lambda device: getattr(provisioning.policy(site.broker.pki, device),
                                                                 "group", "default"),
                                 replay_window_s=config.security.replay_window_s,
                                 liveness_check=second_liveness_judgement(config.liveness.level, site.directory),
                                 device_allowed=lambda device, mode: provisioning.is_allowed(site.broker.pki, device, mode))
        service.start()
        notify.ready(f"{len(loaded.gallery)} subjects")
        print(f"{args.name}: ready, {len(loaded.gallery)} enrolled subjects", flush=True)
        watchdog = notify.Watchdog(status_file=paths.data_dir() / STATUS_DIR / f"{args.name}.json")
        while not stop.wait(1.0):
            watchdog.heartbeat(model_loaded=True, model=pipeline.embedder_pack.label,
                               broker=service.endpoint.connected.is_set(), queue=service.queue_depth)
        notify.stopping()
        service.stop()
        print(f"{args.name}: stopped ({dict(service.stats)})", flush=True)
    finally:
        data.close()
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    import dataclasses

    from appliance.capture.sources import open_source
    from appliance.edge.daemon import EdgeDaemon, EdgeSettings
    from appliance.edge.hardware import ConsoleDisplay
    from appliance.edge.offline import open_door
    from appliance.liveness.evidence import Ed25519Signer
    from appliance.liveness.checker import LivenessChecker

    config = config_from(args)
    if args.liveness:
        config = dataclasses.replace(config, liveness=dataclasses.replace(config.liveness, level=args.liveness))
    if config.liveness.level == "active":
        # the challenge runs in appliance.liveness.session but not yet inside the door's pass
        # loop; refusing to start beats a door that would turn every visitor away
        raise ApplianceError(ErrorCode.CONFIG_INVALID, "liveness.level 'active' is not supported by "
                             "'appliance edge' yet; use 'passive' or 'passive+motion'")
    site, host, port = _site(args, config)
    stop = _stop_event()
    pipeline = pipeline_from(args, config)
    pipeline.load()
    liveness = LivenessChecker(config.liveness, pipeline.registry) if config.liveness.level != "off" else None
    if args.mode:
        config = dataclasses.replace(config, offline=dataclasses.replace(config.offline, mode=args.mode))
    # the door's cache, outbox, sync client and decider share one MQTT connection
    door = open_door(site, args.device, config.offline, pipeline.threshold, config.security.replay_window_s)
    watchdog = notify.Watchdog(status_file=paths.data_dir() / STATUS_DIR / f"{args.device}.json")
    settings = EdgeSettings(args.device, burst_frames=max(3, config.liveness.burst_frames), cool_down_s=args.cool_down)
    signer = Ed25519Signer(site.device_keys(args.device).signing.private_bytes_raw(), key_id=args.device)
    daemon = EdgeDaemon(
        settings, pipeline, door.decider, liveness=liveness, display=ConsoleDisplay(), emit=door.emit,
        signer=signer, calibration_id=liveness.calibration_id if liveness else "",
        heartbeat=lambda: watchdog.heartbeat(model_loaded=True, model=pipeline.embedder_pack.label,
                                             broker=door.link.online, cache_revision=door.cache.revision,
                                             outbox=door.outbox.depth()),
    )
    source = open_source(args.source, fps=args.fps)
    notify.ready("camera open")
    print(f"{args.device}: ready (liveness {config.liveness.level})", flush=True)
    shown = 0
    try:
        for _ in daemon.run_iter(source.frames(), stop, args.passes):
            for record in daemon.passes[shown:]:
                name = record.display_name or "-"
                print(f"{args.device}: {record.outcome.upper():11s} {name:12s} {record.reason:16s} "
                      f"{record.latency_ms:6.0f} ms", flush=True)
            shown = len(daemon.passes)
    finally:
        notify.stopping()
        source.close()
        door.close()
        pipeline.close()
    print(f"{args.device}: stopped after {len(daemon.passes)} passes", flush=True)
    return 0
