"""A matcher replica for ``appliance bench load``: built as ``matcher.app.build`` wires one, on
the site's central stores with the synthetic gallery, in the bench's own process (profiled) or
in a process of its own (``--replicas``: further replicas on the same host, as
``appliance-matcher@NAME`` runs them, sharing the stores and the audit log).

A replica process speaks a line protocol with the bench on its standard streams: it prints
``ready`` once serving; ``mark`` starts its measured window and ``stop`` ends it, after which
it drains its queue, commits its audit entries, prints one JSON line (its name, CPU seconds
and requests handled in the window, its counters) and stops.
"""
from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from pathlib import Path

from appliance import heap
from appliance.bench.device_load import cpu_seconds
from appliance.bench.load_mix import DEFAULT_SHARES, THRESHOLD, Mix
from appliance.bench.probes import DIMENSION, PACK

BUDGET_HEADROOM = 2.0  # a door's request budget is this many times its own pace
LOCKOUT_LIFTED = 10**9  # a synthetic door sees far more strangers than a real one: no lock-out
LIVENESS_LEVEL = "passive"
DRAIN_S = 30.0  # a stopped window waits this long at most for the queue to empty
READY_TIMEOUT_S = 120.0  # the gallery (10k templates and their int8 copy) loads within it


def build_replica(site, name: str, gallery_size: int, per_door: float):
    """A full replica ``name`` on the site's stores, with the synthetic gallery of ``gallery_size``:
    ``(matcher, protected data, sync store)``."""
    from appliance.config import load_config
    from appliance.matcher.app import compose
    from appliance.matcher.device_limits import Budget, Limits
    from appliance.matcher.liveness import second_liveness_judgement
    from appliance.matcher.loaded import LoadedGallery
    from appliance.matcher.site_checks import SiteChecks
    from appliance.matcher.sync_store import open_sync_store
    from appliance.matching import FailureTracker, Gallery
    from appliance.stores.protected import key_provider

    config = load_config()
    data = site.protected_data(config)
    store = open_sync_store(data, key_provider(data.security, data.root))
    gallery = Gallery(*PACK, DIMENSION)
    gallery.load([f"s{i}" for i in range(gallery_size)], Mix(DEFAULT_SHARES, gallery_size).gallery())
    defaults = Limits.from_config(config.matcher)
    budget = Budget(max(defaults.requests.rate_per_s, BUDGET_HEADROOM * per_door), defaults.requests.burst)
    checks = SiteChecks(site.broker.pki)  # the provisioning checks, as ``matcher.app.build`` wires them
    matcher = compose(name, site.mqtt(name), site.central_keys(), site.directory,
                      LoadedGallery(gallery, {}, {}), THRESHOLD, data=data, sync_store=store,
                      liveness_check=second_liveness_judgement(LIVENESS_LEVEL, site.directory),
                      tracker=FailureTracker(limit=LOCKOUT_LIFTED), may_send=checks.may_send,
                      device_allowed=checks.device_allowed,
                      limits=Limits(requests=budget, rejects_per_window=defaults.rejects_per_window,
                                    window_s=defaults.window_s),
                      request_gather_s=config.matcher.request_gather_s)
    return matcher, data, store


def drain(matcher, deadline_s: float = DRAIN_S) -> None:
    """Wait until the replica's queue is empty (at most ``deadline_s``)."""
    deadline = time.monotonic() + deadline_s
    while matcher.queue_depth and time.monotonic() < deadline:
        time.sleep(0.05)


class ReplicaProcess:
    """The bench's side of a replica in a process of its own."""

    def __init__(self, folder: str, port: int, name: str, gallery_size: int, per_door: float):
        spec = {"folder": folder, "port": port, "name": name, "gallery": gallery_size, "per_door": per_door}
        self.name = name
        self.process = subprocess.Popen([sys.executable, "-m", "appliance.bench.load_replica", json.dumps(spec)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def wait_ready(self) -> None:
        line = self._line(READY_TIMEOUT_S)
        if line != "ready":
            raise RuntimeError(f"replica {self.name} did not start: {line!r} (exit {self.process.poll()})")

    def mark(self) -> None:
        self._send("mark")

    def stop(self) -> dict:
        """End the window: what the replica measured in it (JSON), once it has stopped."""
        self._send("stop")
        line = self._line(DRAIN_S + READY_TIMEOUT_S)
        code = self.process.wait(timeout=READY_TIMEOUT_S)
        if not line.startswith("{"):
            raise RuntimeError(f"replica {self.name} ended without its figures (exit {code}): {line!r}")
        return json.loads(line)

    def kill(self) -> None:
        """Whatever state it is in: ended, and its pipes closed."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            pipe.close()

    def _send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _line(self, timeout_s: float) -> str:
        with selectors.DefaultSelector() as waiting:
            waiting.register(self.process.stdout, selectors.EVENT_READ)
            if not waiting.select(timeout_s):
                raise RuntimeError(f"replica {self.name}: no answer within {timeout_s:g} s")
        return self.process.stdout.readline().strip()


def serve(spec: dict) -> dict:
    """A replica process's whole run (see the module's docstring)."""
    from appliance.site import Site

    site = Site(Path(spec["folder"]), port=int(spec["port"]))
    matcher, data, store = build_replica(site, spec["name"], int(spec["gallery"]), float(spec["per_door"]))
    try:
        matcher.start()
        heap.settle()  # as ``appliance matcher`` does once started
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "mark":
            raise SystemExit("expected mark")
        cpu_before, handled_before = cpu_seconds(), matcher.requests.route.worker.handled
        if sys.stdin.readline().strip() != "stop":
            raise SystemExit("expected stop")
        cpu, handled = cpu_seconds() - cpu_before, matcher.requests.route.worker.handled - handled_before
        drain(matcher)
        data.audit.flush()
        return {"name": spec["name"], "cpu_s": cpu, "handled": handled,
                "stats": {key: value for key, value in matcher.stats.items() if value}}
    finally:
        matcher.stop()
        store.close()
        data.close()


def main(argv: list[str]) -> int:
    print(json.dumps(serve(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
