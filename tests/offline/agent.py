"""A camera-less door for the durability tests: syncs its cache and drains its outbox;
optionally writes events. Prints one JSON line per state change (and per committed event)
so a test can follow it, and kill it. Run as ``python tests/offline/agent.py --site ...``."""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from appliance.config import OfflineConfig
from appliance.edge.offline import open_door
from appliance.protocol import messages, topics
from appliance.site import Site


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent.py")
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
