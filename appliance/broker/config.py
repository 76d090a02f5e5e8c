"""Render the Mosquitto configuration and ACL from the template and the issued identities."""
from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from string import Template

from appliance import paths
from appliance.broker.pki import ProjectPKI
from appliance.protocol import topics

TEMPLATE = paths.REPO_ROOT / "config" / "mosquitto" / "mosquitto.conf.template"
MAX_PACKET_BYTES = 64 * 1024  # a sealed template is ~3 KB; anything far larger is abuse


@dataclass(frozen=True)
class BrokerSettings:
    port: int = 8883
    bind_address: str = "127.0.0.1"
    # Mosquitto started as root drops to this user before reading its files; a broker for
    # development and tests runs as the invoking user so it can read its own PKI folder.
    run_as: str | None = None


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
    text = Template(TEMPLATE.read_text()).substitute(
        user_line=f"user {run_as}",
        data_dir=str(out.resolve()),
        max_packet_size=MAX_PACKET_BYTES,
        port=settings.port,
        bind_address=settings.bind_address,
        ca_file=pki.ca_cert.resolve(),
        cert_file=pki.broker_cert.resolve(),
        key_file=pki.broker_key.resolve(),
        crl_file=pki.crl.resolve(),
        acl_file=acl.resolve(),
    )
    config = out / "mosquitto.conf"
    config.write_text(text)
    return config
