"""Chromium in kiosk mode at the edge daemon's local page (``systemd/appliance-kiosk.service``).

``python -m appliance.edge.kiosk.browser`` waits until the edge serves the page on
``127.0.0.1:[kiosk] port`` (the daemon loads its models first), then replaces itself with
Debian's chromium: full screen (``--kiosk --app=``), no first-run, translate, sync, update or
crash-report traffic, every host name except the loopback address resolving to nothing (the page
needs no network), and a throw-away profile (``--incognito``). Where no display server runs (a
bare Pi console), ``cage`` (Debian's Wayland kiosk compositor) is put in front when installed.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from appliance.edge.kiosk.server import LOOPBACK

CHROMIUM = "/usr/bin/chromium"
CAGE = "cage"  # a Wayland compositor that shows one full-screen application
PAGE_WAIT_S = 180.0  # the edge loads its models before it serves the page
POLL_S = 1.0
PROBE_TIMEOUT_S = 2.0
KIOSK_FLAGS = (
    "--kiosk", "--noerrdialogs", "--disable-infobars", "--no-first-run", "--no-default-browser-check",
    "--incognito", "--disable-sync", "--disable-translate", "--disable-extensions", "--disable-default-apps",
    "--disable-background-networking", "--disable-component-update", "--disable-breakpad",
    "--disable-features=Translate,MediaRouter,OptimizationHints", "--password-store=basic",
    "--overscroll-history-navigation=0", "--disable-pinch", "--check-for-update-interval=31536000",
    f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {LOOPBACK}", "--proxy-server=direct://",
)


def page_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}/"


def browser_command(port: int, profile: Path, chromium: str = CHROMIUM) -> list[str]:
    """Chromium's command line for the kiosk page on ``port`` (profile: a folder it may write)."""
    return [chromium, *KIOSK_FLAGS, f"--user-data-dir={profile}", f"--app={page_url(port)}"]


def with_display(command: list[str], environ: dict[str, str]) -> list[str]:
    """``command`` as is inside a graphical session; under ``cage`` on a bare console."""
    if environ.get("WAYLAND_DISPLAY") or environ.get("DISPLAY"):
        return command
    cage = shutil.which(CAGE)
    return [cage, "-s", "--", *command] if cage else command


def wait_for_page(url: str, timeout_s: float = PAGE_WAIT_S, poll_s: float = POLL_S) -> bool:
    """True once ``url`` answers 200, False when ``timeout_s`` passed without it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    from appliance.config import load_config
    from appliance.errors import ErrorCode

    parser = argparse.ArgumentParser(prog="python -m appliance.edge.kiosk.browser", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, help="the configuration file ([kiosk] enabled and port)")
    parser.add_argument("--profile", type=Path, default=Path(os.environ.get("STATE_DIRECTORY", "/tmp")) / "chromium",
                        help="chromium's profile folder (default: $STATE_DIRECTORY/chromium)")
    parser.add_argument("--wait", type=float, default=PAGE_WAIT_S, help="seconds to wait for the page")
    parser.add_argument("--print", action="store_true", help="print the command line instead of running it")
    args = parser.parse_args(argv)
    kiosk = load_config(args.config).kiosk
    if not kiosk.enabled:
        print("kiosk-browser: [kiosk] enabled = false: the edge serves no page; set it to true", file=sys.stderr)
        return ErrorCode.CONFIG_INVALID.value[1]
    url = page_url(kiosk.port)
    if not wait_for_page(url, args.wait):
        print(f"kiosk-browser: no page at {url} after {args.wait:g} s: is appliance-edge.service running?",
              file=sys.stderr)
        return ErrorCode.REQUEST_TIMEOUT.value[1]
    command = with_display(browser_command(kiosk.port, args.profile), dict(os.environ))
    if args.print:
        print(shlex.join(command))
        return 0
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
