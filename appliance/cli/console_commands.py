"""``appliance console``: the web console and REST API (``appliance.web``), and the TLS
certificate it serves (``appliance console certificate``).

``appliance console`` serves HTTPS on ``[console] bind``/``port`` with the project PKI's
console certificate (flags override the configuration); ``--insecure-http`` is for
development on 127.0.0.1 only. It tells systemd when it is ready, pings the watchdog and
stops cleanly on SIGTERM (``systemd/appliance-console.service``).
"""
from __future__ import annotations

import argparse
import signal
import threading

from appliance import paths
from appliance.cli.common import config_from
from appliance.config import with_overrides
from appliance.ops import notify


def register(sub: argparse._SubParsersAction) -> None:
    console = sub.add_parser("console", help="serve the web console and REST API (HTTPS); 'certificate' issues "
                                             "its TLS certificate from the project CA")
    console.add_argument("action", nargs="?", choices=("serve", "certificate"), default="serve",
                         help="serve: the web console and REST API over HTTPS; certificate: issue the console's "
                              "TLS certificate from the project CA (default %(default)s)")
    console.add_argument("--bind", help="address to listen on (default: console.bind)")
    console.add_argument("--port", type=int, help="TCP port (default: console.port)")
    console.add_argument("--tls-cert", help="server certificate, PEM (default: console.tls_cert or "
                                            "<data>/pki/console.crt)")
    console.add_argument("--tls-key", help="its private key, PEM (default: console.tls_key or <data>/pki/console.key)")
    console.add_argument("--insecure-http", action="store_true",
                         help="development only: plain HTTP, refused unless --bind is a loopback address")
    console.add_argument("--host", action="append",
                         help="certificate: a host name or address clients use (repeatable; default localhost, "
                              "127.0.0.1, ::1)")
    console.set_defaults(handler=cmd_console)


def cmd_console(args: argparse.Namespace) -> int:
    from appliance.ops.selftest import finish_interrupted_updates
    from appliance.web import serving

    data_root = paths.data_dir()
    if args.action == "certificate":
        from appliance.broker.pki import ProjectPKI
        from appliance.web.services import PKI_DIR

        cert, key = ProjectPKI(data_root / PKI_DIR).issue_server(
            serving.CONSOLE_CERT_NAME, tuple(args.host) if args.host else serving.DEFAULT_HOSTS)
        print(f"console certificate {cert} (key {key}); clients verify it with {data_root / PKI_DIR / 'ca.crt'}")
        return 0
    config = with_overrides(config_from(args), console={"bind": args.bind, "port": args.port,
                                                        "tls_cert": args.tls_cert, "tls_key": args.tls_key})
    tls = None if args.insecure_http else serving.check_tls(serving.default_tls(config, data_root))
    finish_interrupted_updates(config)  # enrollment photos are embedded here: no pack left on trial
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    status_file = notify.status_path(config.ops.status_dir, data_root, serving.SERVICE, serving.SERVICE)
    return serving.serve(config, data_root, tls, stop, status_file)
