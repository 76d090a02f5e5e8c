"""Render the Mosquitto configuration and access rules from the template and the issued
identities.

The rules (``topics.RIGHTS``) go to the broker through Mosquitto's dynamic-security plugin,
not an ``acl_file``: Mosquitto 2.0's ACL file never checks a SUBSCRIBE (every filter is
granted, ``$share/<group>/...`` included) and only filters on delivery, so a device could
join the matchers' shared group and have its turn of every door's requests dropped. The
plugin checks SUBSCRIBE against the whole filter, ``$share/<group>/`` prefix included, and
refuses by default. It reads its document at start only (not on SIGHUP): a newly issued
identity has no rights until the broker restarts, which fails closed.

A site broker may also carry a bridge to the central broker (``BrokerSettings.bridge``,
``appliance.broker.bridge``): its ``connection`` block is appended to the rendered file, and
on the central broker a bridge identity gets only the topics of its site's doors.
"""
from __future__ import annotations

import getpass
import glob
import json
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path
from string import Template

from appliance import paths
from appliance.broker import bridge as bridges
from appliance.broker.pki import ProjectPKI
from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import topics

TEMPLATE_RELPATH = "config/mosquitto/mosquitto.conf.template"
PRIVATE_FILE_MODE = 0o600
MAX_PACKET_BYTES = 64 * 1024  # a sealed template is ~3 KB; anything far larger is abuse
ACCESS_FILE = "access.json"  # the dynamic-security plugin's document, rendered from topics.RIGHTS
PLUGIN_NAME = "mosquitto_dynamic_security.so"
# where Debian/Raspberry Pi OS (multiarch), other distributions and source builds put it
PLUGIN_GLOBS = ("/usr/lib/*-linux-gnu/", "/usr/lib/", "/usr/lib64/", "/usr/local/lib/", "/usr/lib/mosquitto/")
# the plugin's ACL types: what a client sends, what it is delivered, what it may subscribe
SEND, RECEIVE, SUBSCRIBE_FILTER = "publishClientSend", "publishClientReceive", "subscribePattern"
# nothing that is not granted: publish, delivery and subscribe all refused by default;
# unsubscribing only ever removes the client's own subscriptions
DEFAULT_ACCESS = {SEND: False, RECEIVE: False, "subscribe": False, "unsubscribe": True}


@dataclass(frozen=True)
class BrokerSettings:
    port: int = 8883
    bind_address: str = "127.0.0.1"
    # the dynamic-security plugin; None: found in the usual library folders
    plugin_path: str | None = None
    # Mosquitto started as root drops to this user before reading its files; a broker for
    # development and tests runs as the invoking user so it can read its own PKI folder.
    run_as: str | None = None
    # copy the CA, broker certificate and key and the CRL into the output folder, owned by
    # run_as: the broker's service user then needs no access to the site's PKI folder
    copy_tls: bool = False
    # a site broker: its bridge to the central broker (None: a stand-alone or central broker)
    bridge: bridges.BridgeSettings | None = None


TLS_FILES = ("ca_file", "cert_file", "key_file", "crl_file")


def render_acl(pki: ProjectPKI) -> str:
    """The access rules of every active identity as the dynamic-security plugin's document:
    one client per identity (username = certificate CN) holding one role of the same name
    with its rules, ``%u`` already replaced (the plugin of Mosquitto 2.0 has no placeholders).
    A revoked identity is left out: even a certificate the CRL missed gets no right."""
    roles, clients = [], []
    for identity in sorted(pki.identities().values(), key=lambda i: i.name):
        if identity.revoked:
            continue
        acls = []
        granted = bridges.rights(pki, identity.name) if identity.role == bridges.BRIDGE_ROLE else \
            topics.rights_of(identity.role, identity.name)
        for access, rule in granted:
            if access == topics.PUBLISH:
                acls.append(_acl(SEND, rule))
            else:  # the filter (with its $share prefix) to subscribe, its topics to deliver
                acls += [_acl(SUBSCRIBE_FILTER, rule), _acl(RECEIVE, topics.unshared(rule))]
        roles.append({"rolename": identity.name, "acls": acls})
        clients.append({"username": identity.name, "textname": identity.role,
                        "roles": [{"rolename": identity.name}]})
    document = {"defaultACLAccess": DEFAULT_ACCESS, "clients": clients, "groups": [], "roles": roles}
    return json.dumps(document, indent=2) + "\n"


def _acl(kind: str, topic: str) -> dict:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def plugin_path(settings: BrokerSettings) -> Path:
    """The dynamic-security plugin: without it the broker could not refuse a SUBSCRIBE, so a
    missing plugin stops the rendering rather than start a broker that would grant every one."""
    candidates = [settings.plugin_path] if settings.plugin_path else \
        sorted(found for folder in PLUGIN_GLOBS for found in glob.glob(folder + PLUGIN_NAME))
    for candidate in candidates:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ApplianceError(ErrorCode.DEPENDENCY_MISSING, f"{PLUGIN_NAME} not found (Mosquitto 2.0 ships it: "
                         "apt-get install mosquitto; or set the broker's plugin_path)")


def render(pki: ProjectPKI, out_dir: str | Path, settings: BrokerSettings) -> Path:
    """Write mosquitto.conf and the access rules into ``out_dir``; returns the config path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plugin = plugin_path(settings)
    access = out / ACCESS_FILE
    _write_private(access, render_acl(pki))
    run_as = settings.run_as or getpass.getuser()
    tls = dict(zip(TLS_FILES, (pki.ca_cert, pki.broker_cert, pki.broker_key, pki.crl)))
    for _, path in tls.items():
        if not path.is_file():
            raise ApplianceError(ErrorCode.FILE_NOT_FOUND, f"{path}: run 'appliance provision ca' and "
                                 "'appliance provision broker' first")
    if settings.copy_tls:
        tls = {name: _copy(path, out / "tls" / path.name) for name, path in tls.items()}
    text = Template(paths.resource(TEMPLATE_RELPATH).read_text()).substitute(
        user_line=f"user {run_as}",
        data_dir=str(out.resolve()),
        max_packet_size=MAX_PACKET_BYTES,
        port=settings.port,
        bind_address=settings.bind_address,
        plugin=plugin,
        access_file=access.resolve(),
        **{name: path.resolve() for name, path in tls.items()},
    )
    if settings.bridge is not None:
        bridge_tls = bridges.tls_files(pki, settings.bridge.name)
        if settings.copy_tls:
            bridge_tls = {name: _copy(path, out / "tls" / path.name) for name, path in bridge_tls.items()}
        text += bridges.render_connection(pki, settings.bridge, bridge_tls)
    config = out / "mosquitto.conf"
    config.write_text(text)
    _hand_over(out, run_as)
    return config


def _write_private(target: Path, text: str) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(target)


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, PRIVATE_FILE_MODE)
    tmp.replace(target)
    return target


def _hand_over(folder: Path, user: str) -> None:
    """Run as root (systemd's ``ExecStartPre=+``) for a broker that runs as ``user``: the
    rendered files become that user's, so the broker reads them without any other right."""
    if os.geteuid() != 0 or user == getpass.getuser():
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"broker user {user!r} does not exist "
                             "(scripts/install-systemd.sh creates appliance-broker)") from None
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
