"""A matcher replica in a process of its own, so that a test can SIGKILL it mid-load.

``python bridgekit.py SITE_FOLDER NAME HOST PORT THRESHOLD STATS_FILE``: the replica is composed as
``sitekit.start_matcher`` composes one (the site's gallery and device policies, no sync store:
requests decided, events counted), connected to the broker at HOST:PORT under its own
certificate. It prints ``ready`` once subscribed, writes its counters to STATS_FILE every
``STATS_EVERY_S`` and stops cleanly when its standard input closes.
"""
from __future__ import annotations

import json
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

STATS_EVERY_S = 0.1
SUBACK_WAIT_S = 0.5  # subscriptions are sent right after the CONNACK; their SUBACK follows at once
START_TIMEOUT_S = 60.0  # loading the gallery and connecting, on a busy machine
STOP_TIMEOUT_S = 10.0


def spawn(site_folder: Path, name: str, host: str, port: int, threshold: float,
          stats_file: Path) -> subprocess.Popen:
    """Start the replica process; returns it once it says it is serving."""
    process = subprocess.Popen([sys.executable, __file__, str(site_folder), name, host, str(port), repr(threshold),
                                str(stats_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
    line = process.stdout.readline().strip() if ready else ""
    if line != "ready":
        process.kill()
        raise AssertionError(f"{name} did not start: {line!r} (exit {process.wait()})")
    return process


def stop(process: subprocess.Popen) -> None:
    """Let a live replica stop cleanly (it writes its final counters); kill it if it hangs."""
    if process.poll() is not None:
        return
    process.stdin.close()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def read_stats(stats_file: Path) -> dict[str, int]:
    try:
        return json.loads(stats_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _serve(site_folder: str, name: str, host: str, port: str, threshold: str, stats_file: str) -> None:
    from appliance.config import load_config
    from appliance.matcher.app import compose
    from appliance.matcher.loaded import load_gallery
    from appliance.ops import provisioning
    from appliance.config import registry_for
    from appliance.security.roles import Principal, Role
    from appliance.site import Site
    from appliance.transport.mqtt import settings_for

    config = load_config()
    site = Site(site_folder)
    data = site.protected_data(config)
    pack = registry_for(config).get(config.models.embedder)
    loaded = load_gallery(data, Principal(name, Role.OPERATOR), pack)
    pki = site.broker.pki
    matcher = compose(name, settings_for(pki, name, host, int(port), reconnect_max_s=1), data.node, site.directory,
                      loaded, float(threshold),
                      device_allowed=lambda device, mode: provisioning.is_allowed(pki, device, mode)).start()
    data.close()  # the gallery is in memory; this replica writes nothing to the central stores
    time.sleep(SUBACK_WAIT_S)
    target = Path(stats_file)
    stop = threading.Event()

    def write_stats() -> None:
        while not stop.wait(STATS_EVERY_S):
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps(dict(matcher.stats)))
            tmp.replace(target)

    writer = threading.Thread(target=write_stats, daemon=True)
    writer.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes our standard input (or kills us)
    stop.set()
    writer.join()
    matcher.stop()
    target.write_text(json.dumps(dict(matcher.stats)))


if __name__ == "__main__":
    _serve(*sys.argv[1:])
