"""Serving the console: uvicorn with TLS from the project PKI, systemd readiness and
watchdog, a clean stop on SIGTERM, and an access log without query strings.

TLS is the default: the server certificate is ``[console] tls_cert``/``tls_key``, else the one
``appliance console certificate`` issued from the project CA (``<data>/pki/console.crt``), so
clients verify it against the site's ``ca.crt``. Plain HTTP exists for development only, and
only on a loopback address. The access log keeps method, path and status but never the query
string (a search text could be a name); the request body is never logged.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops import notify
from appliance.web.services import PKI_DIR

CONSOLE_CERT_NAME = "console"  # <data>/pki/console.crt and .key
ACCESS_LOGGER = "uvicorn.access"
LOOP_PERIOD_S = 1.0
START_TIMEOUT_S = 60.0
PATH_ARG = 2  # uvicorn's access record: (client, method, path with query, http version, status)
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
SERVICE = "console"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path


def default_tls(config: Config, data_root: Path) -> Tls:
    """The configured certificate and key, else the ones issued from the project CA."""
    folder = Path(data_root) / PKI_DIR
    return Tls(Path(config.console.tls_cert) if config.console.tls_cert else folder / f"{CONSOLE_CERT_NAME}.crt",
               Path(config.console.tls_key) if config.console.tls_key else folder / f"{CONSOLE_CERT_NAME}.key")


def check_tls(tls: Tls) -> Tls:
    missing = [str(p) for p in (tls.cert, tls.key) if not p.is_file()]
    if missing:
        raise ApplianceError(ErrorCode.PKI_ERROR, f"no console certificate: {', '.join(missing)} missing; run "
                                                  "'appliance console certificate --host NAME' (or set [console] "
                                                  "tls_cert and tls_key)")
    return tls


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DropQueryStrings(logging.Filter):
    """Cuts the query string from uvicorn's access-log records (``?q=<a name>`` never lands
    in a log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > PATH_ARG and isinstance(args[PATH_ARG], str):
            record.args = (*args[:PATH_ARG], args[PATH_ARG].split("?", 1)[0], *args[PATH_ARG + 1:])
        return True


def serve(config: Config, data_root: Path, tls: Tls | None, stop: threading.Event,
          status_file: Path | None = None) -> int:
    """Run until ``stop`` is set (SIGTERM, SIGINT) or the server dies; 0 after a clean stop.
    ``tls`` None is plain HTTP, refused unless the bind address is a loopback address."""
    import uvicorn

    from appliance.web.app import create_app

    host, port = config.console.bind, config.console.port
    if tls is None and not is_loopback(host):
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"console.bind: plain HTTP only on a loopback address, not "
                                                       f"{host!r}; serve TLS (the default)")
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, DropQueryStrings) for f in access.filters):
        access.addFilter(DropQueryStrings())
    app = create_app(config, data_root)
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=True, server_header=False, proxy_headers=False,
        ssl_certfile=str(tls.cert) if tls else None, ssl_keyfile=str(tls.key) if tls else None, lifespan="on"))
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    waited = 0.0
    while not server.started and thread.is_alive() and waited < START_TIMEOUT_S and not stop.is_set():
        stop.wait(0.05)
        waited += 0.05
    if not server.started:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        if stop.is_set():
            return 0
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"console did not start on {host}:{port} (see the log)")
    scheme = "https" if tls else "http"
    notify.ready(f"{scheme}://{host}:{port}")
    print(f"console: ready on {scheme}://{host}:{port}", flush=True)
    watchdog = notify.Watchdog(status_file=status_file)
    while not stop.wait(LOOP_PERIOD_S) and thread.is_alive():
        watchdog.heartbeat(model_loaded=True, model="none", url=f"{scheme}://{host}:{port}")
    notify.stopping()
    server.should_exit = True
    thread.join(START_TIMEOUT_S)
    watchdog.stopped()
    print("console: stopped", flush=True)
    return 0 if stop.is_set() else 1
