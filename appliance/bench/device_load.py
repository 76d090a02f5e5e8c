"""Simulated doors for ``bench matcher``: runs in its own process so that 50 clients' TLS,
envelope and MQTT work does not share the matcher's interpreter (and GIL).

    python -m appliance.bench.device_load SITE PORT NAMES PER_DEVICE  ->  JSON on stdout
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    from appliance.bench.matcher_bench import PACK, _probe, random_templates
    from appliance.edge.link import MatcherLink
    from appliance.site import Site

    folder, port, names, per_device = Path(argv[0]), int(argv[1]), argv[2].split(","), int(argv[3])
    site = Site(folder, port=port)
    links = []
    for name in names:
        link = MatcherLink(name, site.mqtt(name), site.device_keys(name), site.directory)
        link.connect()
        links.append(link)
    probes = random_templates(per_device, 11)
    samples: list[float] = []
    failures = 0
    lock = threading.Lock()

    def device_loop(link: MatcherLink) -> None:
        nonlocal failures
        for vector in probes:
            start = time.perf_counter()
            try:
                link.request(_probe(link.device_id, vector), PACK, timeout=10.0)
            except Exception:  # noqa: BLE001 - counted and reported
                with lock:
                    failures += 1
                continue
            with lock:
                samples.append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=device_loop, args=(link,)) for link in links]
    start_all = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start_all
    for link in links:
        link.close()
    json.dump({"samples_ms": samples, "failures": failures, "elapsed_s": elapsed}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
