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
from typing import TYPE_CHECKING

from appliance import heap, paths
from appliance.cli import arg_types
from appliance.cli.common import config_from
from appliance.config import LIVENESS_LEVELS, MATCHING_MODES, Config, check_service, with_overrides
from appliance.ops import notify, service_lock

if TYPE_CHECKING:  # the site's PKI and broker settings load when a service starts
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
    edge.add_argument("--passes", type=arg_types.positive_int, help="stop after this many passes")
    edge.add_argument("--liveness", help=f"override liveness.level ({', '.join(LIVENESS_LEVELS)})")
    edge.add_argument("--cool-down", type=float,
                      help="seconds to ignore frames after a pass (default: device.cool_down_s)")
    edge.add_argument("--mode", help=f"override offline.mode ({', '.join(MATCHING_MODES)})")
    edge.set_defaults(handler=cmd_edge)


def _site_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--site", help="site folder: pki/, nodes/, central/, directory.json (default: $APPLIANCE_DATA_DIR)"
    )
    parser.add_argument("--host", help="broker host (default: ops.broker_host)")
    parser.add_argument("--port", type=arg_types.port, help="broker port (default: ops.broker_port)")


def _site(args: argparse.Namespace, config) -> tuple[Site, str, int]:
    from appliance.site import Site

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
    config = service_config(args, "matcher")
    site, _, _ = _site(args, config)
    stop = _stop_event()
    status_file = _status_file(config, "matcher", config.matcher.name)
    # before the gallery loads: a second process under this name is refused at once
    with service_lock.hold(status_file, f"matcher replica {config.matcher.name}"):
        return _serve_matcher(config, site, stop, status_file)


def _serve_matcher(config: Config, site: Site, stop: threading.Event, status_file: Path) -> int:
    from appliance.matcher.app import build

    app = build(config, site)  # the configured pack and threshold; no models loaded
    name, subjects = app.name, len(app.matcher.loaded.gallery)
    try:
        app.start()
        heap.settle()  # the gallery and the rest of start-up, out of the collector's full passes
        notify.ready(f"{subjects} subjects")
        print(f"{name}: ready, {subjects} enrolled subjects", flush=True)
        watchdog = notify.Watchdog(status_file=status_file)
        while not stop.wait(1.0):
            watchdog.heartbeat(model_loaded=True, model=app.pack.label, broker=app.matcher.service.connected,
                               queue=app.matcher.queue_depth, templates_quarantined=app.matcher.quarantined,
                               muted=app.matcher.muted_devices, audit=app.data.audit.writer.state())
        notify.stopping()
        app.stop()
        watchdog.stopped()
        print(f"{name}: stopped ({dict(app.matcher.stats)})", flush=True)
    finally:
        app.close()
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    from appliance.edge.app import EdgeApp
    from appliance.ops.selftest import finish_interrupted_updates

    config = service_config(args, "edge")
    site, _, _ = _site(args, config)
    stop = _stop_event()
    status_file = _status_file(config, "edge", config.device.name)
    with service_lock.hold(status_file, f"edge daemon of {config.device.name}"):  # one per door on a host
        finish_interrupted_updates(config)  # before the models load: an update cut short is self-tested first
        app = EdgeApp.build(config, site, status_file=status_file)
        # the models, stores and imports out of the collector's full passes: each one walked them all
        # (~50 ms here, more on a Pi) while a person stood at the door (issue 17)
        heap.settle()
        return app.serve(stop, args.passes)
