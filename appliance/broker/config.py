"""Render the Mosquitto configuration and ACL from the template and the issued identities."""
from __future__ import annotations

import getpass
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path
from string import Template

from appliance import paths
from appliance.broker.pki import ProjectPKI
from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import topics

TEMPLATE_RELPATH = "config/mosquitto/mosquitto.conf.template"
PRIVATE_FILE_MODE = 0o600
MAX_PACKET_BYTES = 64 * 1024  # a sealed template is ~3 KB; anything far larger is abuse


@dataclass(frozen=True)
class BrokerSettings:
    port: int = 8883
    bind_address: str = "127.0.0.1"
    # Mosquitto started as root drops to this user before reading its files; a broker for
    # development and tests runs as the invoking user so it can read its own PKI folder.
    run_as: str | None = None
    # copy the CA, broker certificate and key and the CRL into the output folder, owned by
    # run_as: the broker's service user then needs no access to the site's PKI folder
    copy_tls: bool = False


TLS_FILES = ("ca_file", "cert_file", "key_file", "crl_file")


def render_acl(pki: ProjectPKI) -> str:
    lines = ["# Rendered by appliance broker config; do not edit by hand.", "# Devices: their own subtree only."]
    for suffix in topics.DEVICE_PUBLISHES:
        lines.append(f"pattern write {topics.device_topic('%u', suffix)}")
    for suffix in topics.DEVICE_SUBSCRIBES:
        lines.append(f"pattern read {topics.device_topic('%u', suffix)}")
    for identity in sorted(pki.identities().values(), key=lambda i: i.name):
        if identity.revoked or identity.role == "device":
            continue
        lines.append("")
        lines.append(f"user {identity.name}")
        for access, topic in topics.ROLE_RIGHTS[identity.role]:
            lines.append(f"topic {access} {topic}")
    return "\n".join(lines) + "\n"


def render(pki: ProjectPKI, out_dir: str | Path, settings: BrokerSettings) -> Path:
    """Write mosquitto.conf and acl into ``out_dir``; returns the config path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    acl = out / "acl"
    acl.write_text(render_acl(pki))
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
        acl_file=acl.resolve(),
        **{name: path.resolve() for name, path in tls.items()},
    )
    config = out / "mosquitto.conf"
    config.write_text(text)
    _hand_over(out, run_as)
    return config


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
