"""``Services``: what one console process holds open, shared by every request.

The stores are opened once per process (opening a SQLCipher file derives its key and checks
the schema: far too slow per request). FastAPI runs sync routes in a thread pool, while a
SQLite connection has one transaction at a time, so every use of the stores goes through
``Services.stores()``, one re-entrant lock: requests that touch personal data run one after
another. That is the right trade for an administrator's console (a handful of people); the
door traffic never comes through here. The ``EnrollmentDesk`` loads face models, which takes
seconds, so it is built on first use (enrollment, identify, verify), not at start.

Enrollment from a door camera needs the console's own MQTT connection (``CaptureClient``,
under ``[console] capture_identity``): it too is made on first use, under a lock of its own,
so neither connecting to the broker nor waiting for a door ever holds ``stores()``.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.broker.pki import ProjectPKI
from appliance.config import Config
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.sync_store import SyncStore, open_sync_store
from appliance.ops.accounts import ACCOUNTS_DB, Accounts
from appliance.security.envelope import NodeKeys
from appliance.security.keys import ensure_keys
from appliance.stores.protected import ProtectedData, key_provider

if TYPE_CHECKING:
    from appliance.matcher.capture_client import CaptureClient
    from appliance.matcher.enrollment_desk import EnrollmentDesk

PKI_DIR = "pki"


class Services:
    """One per process: configuration, protected data, sync store, accounts, PKI, the lazily
    built enrollment desk and the lazily connected capture client."""

    def __init__(self, config: Config, data_root: Path) -> None:
        self.config = config
        self.root = Path(data_root)
        self.keys = key_provider(config.security, self.root)
        ensure_keys(self.keys, (ACCOUNTS_DB,))  # as 'appliance admin' does: accounts may be new here
        self._lock = threading.RLock()
        self.data = ProtectedData(self.root, self.keys, config.security)
        try:
            self.sync: SyncStore = open_sync_store(self.data, self.keys)
        except BaseException:
            self.data.close()
            raise
        try:
            self.accounts = Accounts.open(self.root, self.keys, self.data.audit, config.ops.session_idle_s)
        except BaseException:
            self.sync.close()
            self.data.close()
            raise
        self.pki = ProjectPKI(self.root / PKI_DIR)
        self._desk: EnrollmentDesk | None = None
        self._pipeline: Any = None
        self._capture: CaptureClient | None = None
        self._capture_lock = threading.Lock()  # never the stores' lock: a door may take minutes

    @contextmanager
    def stores(self) -> Iterator["Services"]:
        """Exclusive use of the shared store connections for one request's work."""
        with self._lock:
            yield self

    def desk(self) -> "EnrollmentDesk":
        """The enrollment desk, built (models loaded) on first use; call inside ``stores()``."""
        with self._lock:
            if self._desk is None:
                from appliance.matcher.enrollment_desk import EnrollmentDesk
                from appliance.pipeline import FacePipeline

                self._pipeline = FacePipeline(self.config)
                self._desk = EnrollmentDesk(self.data, self.sync, self._pipeline, self.config)
            return self._desk

    @property
    def desk_loaded(self) -> bool:
        return self._desk is not None

    def capture(self) -> "CaptureClient":
        """The console's capture client, connected on first use; PKI_ERROR (saying what to run)
        when its identity is not provisioned, BROKER_UNAVAILABLE when the broker cannot be
        reached (the next request tries again). Call it outside ``stores()``."""
        with self._capture_lock:
            if self._capture is None:
                client = capture_client(self.config, self.root, self.pki, self.data.node)
                try:
                    client.connect()
                except BaseException:
                    client.close()
                    raise
                self._capture = client
            return self._capture

    def close(self) -> None:
        with self._capture_lock:
            if self._capture is not None:
                self._capture.close()
                self._capture = None
        with self._lock:
            if self._pipeline is not None:
                self._pipeline.close()
                self._pipeline = None
            self.accounts.close()
            self.sync.close()
            self.data.close()


def capture_client(config: Config, root: Path, pki: ProjectPKI, central: NodeKeys) -> "CaptureClient":
    """The capture client of ``[console] capture_identity``, not connected: its certificate
    from the site's PKI, the broker at ``[ops] broker_host``/``broker_port``, the central keys
    signing under its name, the node directory as it is now (a door provisioned later needs a
    console restart), the site's ``may_send`` and ``[liveness] level``. The identity must be a
    console's, not revoked, and in the directory with these very keys (else every door would
    refuse what it signs): otherwise PKI_ERROR saying what to run."""
    from appliance.matcher.capture_client import CaptureClient, console_keys
    from appliance.ops import provisioning
    from appliance.ops.bundle import DIRECTORY_FILE
    from appliance.protocol.directory import CONSOLE, NodeDirectory
    from appliance.transport.mqtt import settings_for

    name = config.console.capture_identity
    identity = pki.identities().get(name)
    directory = NodeDirectory.load(root / DIRECTORY_FILE)
    fix = (f"run 'appliance provision console {name}' on this host, then restart the broker, the doors and "
           "the console (or set [console] capture_identity)")
    if identity is None or identity.role != CONSOLE or identity.revoked or directory.roles.get(name) != CONSOLE:
        raise ApplianceError(ErrorCode.PKI_ERROR, f"no console identity {name!r} for enrollment captures: {fix}")
    listed = directory.get(name).signing.public_bytes_raw()
    if listed != central.signing.public_key().public_bytes_raw():
        raise ApplianceError(ErrorCode.PKI_ERROR, f"the node directory lists other keys for {name!r}: {fix}")
    return CaptureClient(settings_for(pki, name, config.ops.broker_host, config.ops.broker_port),
                         console_keys(central, name), directory, config.security.replay_window_s,
                         may_send=lambda device, topic: provisioning.may_send(pki, device, topic),
                         liveness_level=config.liveness.level)
