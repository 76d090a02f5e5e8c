"""The load test of issue 12: one matcher at the target rate while one device floods.

Doors (``device_load steady``, one process) ask at a steady pace for the whole run; one
provisioned device (``device_load flood``, another process) floods its own request topic
for the middle third with random junk, replays of one genuine envelope and fresh, validly
sealed requests. One replica with the shipped budgets and the real audit log answers on the
real broker. The doors' requests sent during the flood (and ``FLOOD_TAIL_S`` after it) are
compared with those sent before and after it, in the same run, so a change of the shared
machine's load over the run shows in both groups, not as an effect of the flood. The
matcher's counts say what became of the flood: dropped unopened by its budget, its mute or
the broker (a muted device is shed there), opened and refused, decided (within its request
budget), and the flood alarms.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.bench.device_load import cpu_seconds
from appliance.bench.probes import DIMENSION, PACK, Timing, random_templates

# Every door of a busy site with a pass every half second: 40 requests/s in all, ~40 % of
# what one replica answered with 50 devices at once on the 2-CPU development machine.
TARGET_DEVICES, TARGET_RATE_PER_S, LOAD_SECONDS = 20, 2.0, 30.0
# What one door's MQTT client sends flat out (the attack run's 3,000 messages took ~1.5 s).
FLOOD_RATE_PER_S = 2000.0
FLOODER = "flooder"
GALLERY = 10_000
SETUP_S = 4.0  # the load generators connect before their common start
FLOOD_TAIL_S = 1.0  # requests sent this long after the flood ended may still queue behind it
DRAIN_S = 30.0  # after the run: the matcher's queues empty, its counts final
LOCKOUT_LIFTED = 10**9  # synthetic probes never match: every request is searched, none locked out


def _generator(site, folder: str, mode: str, *args: object) -> subprocess.Popen:
    """``python -m appliance.bench.device_load MODE SITE PORT ARGS...`` in its own process."""
    return subprocess.Popen([sys.executable, "-m", "appliance.bench.device_load", mode, folder,
                             str(site.broker.port), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def generator_result(process: subprocess.Popen, timeout: float) -> dict:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed: {err[-2000:]}")
    return json.loads(out)


def _group(samples: list[tuple[float, float]], unanswered: list[float], during) -> dict:
    timing = Timing([ms for sent, ms in samples if during(sent)])
    missed = sum(1 for sent in unanswered if during(sent))
    return {"asked": len(timing.samples_ms) + missed, "unanswered": missed, "median_ms": timing.median,
            "p95_ms": timing.p95}


def load_test(devices: int = TARGET_DEVICES, rate_per_s: float = TARGET_RATE_PER_S, seconds: float = LOAD_SECONDS,
              flood_rate_per_s: float = FLOOD_RATE_PER_S, gallery_size: int = GALLERY) -> dict:
    """``devices`` doors at ``rate_per_s`` each for ``seconds``; one device floods at
    ``flood_rate_per_s`` during the middle third. Stops by itself; loopback only."""
    from appliance.config import load_config
    from appliance.matcher.app import compose
    from appliance.matcher.loaded import LoadedGallery
    from appliance.matching import FailureTracker, Gallery
    from appliance.site import Site

    names = tuple(f"door-{i:02d}" for i in range(devices))
    limit = SETUP_S + seconds + DRAIN_S
    with tempfile.TemporaryDirectory(prefix="appliance-bench-") as folder:
        site = Site(Path(folder))
        site.provision(names + (FLOODER,), matchers=("matcher-1",))
        data = site.protected_data(load_config())
        gallery = Gallery(*PACK, DIMENSION)
        gallery.load([f"s{i}" for i in range(gallery_size)], random_templates(gallery_size, 3))
        site.broker.start()
        matcher = compose("matcher-1", site.mqtt("matcher-1"), site.central_keys(), site.directory,
                          LoadedGallery(gallery, {}, {}), 0.3, data=data,
                          tracker=FailureTracker(limit=LOCKOUT_LIFTED))
        try:
            matcher.start()
            load_before, start_at, cpu_before = os.getloadavg()[0], time.time() + SETUP_S, cpu_seconds()
            doors = _generator(site, folder, "steady", ",".join(names), rate_per_s, seconds, start_at)
            attack = _generator(site, folder, "flood", FLOODER, flood_rate_per_s, seconds / 3,
                                start_at + seconds / 3)
            legit, flood = generator_result(doors, limit), generator_result(attack, limit)
            deadline = time.monotonic() + DRAIN_S
            while matcher.queue_depth and time.monotonic() < deadline:
                time.sleep(0.05)
            load_after, matcher_cpu = os.getloadavg()[0], cpu_seconds() - cpu_before
        finally:
            matcher.stop()
            site.broker.stop()
            data.close()
    stats = matcher.stats
    began, ended = flood["began"], flood["ended"] + FLOOD_TAIL_S
    alone = _group(legit["samples"], legit["unanswered"], lambda sent: not began <= sent <= ended)
    during = _group(legit["samples"], legit["unanswered"], lambda sent: began <= sent <= ended)
    refused = {key.split(":", 1)[1]: count for key, count in stats.items() if key.startswith("rejected:") and count}
    decided = stats["accepted"] + stats["rejected"] - len(legit["samples"])
    # muted, the flooder is shed at the broker: the rest of what it sent never reached the matcher
    shed = max(0, sum(flood["sent"].values()) - sum(refused.values()) - decided)
    return {
        "devices": devices, "rate_per_s": rate_per_s, "seconds": seconds, "gallery": gallery_size,
        "flood_rate_per_s": flood_rate_per_s, "alone": alone, "flood": during,
        "median_ratio": during["median_ms"] / alone["median_ms"], "p95_ratio": during["p95_ms"] / alone["p95_ms"],
        "load_average": [load_before, load_after],
        # CPU seconds over the run, all on the same CPUs: what the flood cost each process
        "cpu_s": {"matcher": matcher_cpu, "doors": legit["cpu_s"], "flooder": flood["cpu_s"]},
        # the doors are never refused: every refusal is the flooder's
        "flooder": {"sent": flood["sent"], "seconds": flood["ended"] - flood["began"],
                    "dropped_unopened": refused.get("over_budget", 0) + refused.get("muted", 0) + shed,
                    "shed_at_broker": shed,
                    "opened_refused": sum(matcher.requests.opener.rejections.values()),
                    "decided": decided,
                    "alarms": stats["alarm:message_flood"], "refused": refused},
    }


def report_lines(load: dict | None) -> list[str]:
    """The load test's section of the matcher benchmark report."""
    if not load:
        return []
    alone, during, flooder = load["alone"], load["flood"], load["flooder"]
    sent = sum(flooder["sent"].values())
    mix = ", ".join(f"{kind} {count:,}" for kind, count in flooder["sent"].items())
    rows = [f"| {label} | {run['asked']:,} | {run['unanswered']} | {run['median_ms']:.1f} | {run['p95_ms']:.1f} |"
            for label, run in (("before and after the flood", alone), ("during the flood", during))]
    return [
        "", f"## Load test: {load['devices']} doors at {load['rate_per_s']:g} requests/s each for "
        f"{load['seconds']:g} s, one device flooding in the middle third", "",
        f"Gallery of {load['gallery']:,}; load average {load['load_average'][0]:.1f} at the start, "
        f"{load['load_average'][1]:.1f} at the end. CPU seconds over the run, every process on the same CPUs: "
        + ", ".join(f"{name} {cpu:.1f}" for name, cpu in load["cpu_s"].items())
        + " (the doors' latency includes their own client process's share).", "",
        "| doors' requests sent | asked | unanswered | median ms | p95 ms |", "|---|---:|---:|---:|---:|", *rows,
        "", f"During the flood the doors' median is **{load['median_ratio']:.2f}x** and their p95 "
        f"{load['p95_ratio']:.2f}x of the rest of the same run. The flooder sent {sent:,} messages in "
        f"{flooder['seconds']:.1f} s ({mix}; target {load['flood_rate_per_s']:,.0f}/s): "
        f"{flooder['dropped_unopened']:,} dropped unopened ({flooder['shed_at_broker']:,} of them shed at the "
        f"broker while it was muted: never delivered to the matcher), "
        f"{flooder['opened_refused']:,} opened and refused, "
        f"{flooder['decided']:,} decided (within its request budget), {flooder['alarms']} flood alarm(s). "
        "Refusals by reason: " + ", ".join(f"{k} {v:,}" for k, v in sorted(flooder["refused"].items())) + ".",
    ]
