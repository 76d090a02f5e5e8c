"""A small project PKI for mutual TLS: one CA, a broker certificate, one client
certificate per device, matcher, auditor, integration, console or site bridge
(certificate CN = MQTT identity).

Keys are ECDSA P-256 (fast handshakes on a Pi), written 0600; certificates PEM.
Revocation produces a CRL that the broker loads (``crlfile``). The registry keeps the serial
of every certificate an identity was ever issued: a rotation leaves the previous certificate
valid until it expires (the device switches at its next reconnect), so revoking the identity
must put all of them on the CRL, not only the one on file now.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.durable_file import SHARED, write_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.filecache import read_json

CA_DAYS = 3650
LEAF_DAYS = 825
# "bridge": a site broker's client certificate on the central broker (appliance.broker.bridge)
ROLES = ("device", "matcher", "auditor", "integration", "console", "bridge")
IDENTITY = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # safe as an MQTT topic level
REGISTRY = "identities.json"


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    group: str = "default"
    revoked: bool = False
    serials: tuple[int, ...] = ()  # every certificate issued to it, oldest first


def _identity(entry: dict) -> Identity:
    return Identity(**{**entry, "serials": tuple(entry.get("serials", ()))})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_durably(path, data)


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _write_pem(path: Path, data: bytes) -> None:
    """Certificates, the CRL, the registry and the revocation list: whole, and kept across a
    power cut once written (a revocation must not come undone)."""
    write_durably(path, data, SHARED)


class ProjectPKI:
    """Files under one folder: ca.crt/ca.key, broker.crt/key, clients/<name>.crt/key, crl.pem."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    # -- paths ---------------------------------------------------------------------------
    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def crl(self) -> Path:
        return self.folder / "crl.pem"

    def cert(self, name: str) -> Path:
        return self.folder / "clients" / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.folder / "clients" / f"{name}.key"

    broker_cert = property(lambda self: self.folder / "broker.crt")
    broker_key = property(lambda self: self.folder / "broker.key")

    # -- registry of issued identities ---------------------------------------------------
    def identities(self) -> dict[str, Identity]:
        entries = read_json(self.folder / REGISTRY, {})
        return {name: _identity(entry) for name, entry in entries.items()}

    def _save(self, identities: dict[str, Identity]) -> None:
        registry = {n: asdict(i) for n, i in sorted(identities.items())}
        _write_pem(self.folder / REGISTRY, json.dumps(registry, indent=2).encode())

    # -- operations -----------------------------------------------------------------------
    def create_ca(self, organisation: str = "Face appliance") -> None:
        """Create the CA once (idempotent): re-running never replaces a CA in use."""
        if self.ca_cert.exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "clients").mkdir(exist_ok=True)
        os.chmod(self.folder, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} CA")])
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write_key(self.ca_key, key)
        _write_pem(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
        self._write_crl([])

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if not self.ca_cert.exists():
            raise ApplianceError(ErrorCode.PKI_ERROR, f"no CA in {self.folder}: run 'appliance provision ca'")
        cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        return cert, key

    def _issue(
        self, common_name: str, server: bool, hosts: tuple[str, ...] = ()
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        ca_cert, ca_key = self._load_ca()
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    def issue_broker(self, hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> None:
        cert, key = self._issue(hosts[0], server=True, hosts=hosts)
        _write_key(self.broker_key, key)
        _write_pem(self.broker_cert, cert.public_bytes(serialization.Encoding.PEM))

    def issue_server(self, name: str, hosts: tuple[str, ...]) -> tuple[Path, Path]:
        """A TLS server certificate for another service of the site (``appliance console``):
        ``<name>.crt`` and ``<name>.key`` beside the broker's; issuing again replaces them."""
        if not IDENTITY.match(name) or not hosts:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"server {name!r}: a lower-case name and at least one host")
        cert, key = self._issue(hosts[0], server=True, hosts=hosts)
        _write_key(self.folder / f"{name}.key", key)
        _write_pem(self.folder / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        return self.folder / f"{name}.crt", self.folder / f"{name}.key"

    def issue_client(self, name: str, role: str, group: str = "default") -> Identity:
        """Issue (or re-issue, rotating the key) the certificate of one client identity."""
        if not IDENTITY.match(name):
            raise ApplianceError(ErrorCode.PKI_ERROR, f"identity {name!r}: lower-case letters, digits and '-' only")
        if role not in ROLES:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"role {role!r} is not one of {ROLES}")
        identities = self.identities()
        known = identities.get(name)
        if known and known.revoked:  # re-issuing would bring a revoked identity back to life
            raise ApplianceError(ErrorCode.PKI_ERROR, f"{name} was revoked; issue the replacement under a new name")
        serials = known.serials if known else ()
        if known and not serials and self.cert(name).exists():  # a registry from before serials were kept
            serials = (_serial(self.cert(name)),)
        cert, key = self._issue(name, server=False)
        # recorded before the files are replaced: a crash in between leaves an extra serial
        # on the list, never a certificate that revocation would miss
        identities[name] = Identity(name, role, group, serials=(*serials, cert.serial_number))
        self._save(identities)
        _write_key(self.key(name), key)
        _write_pem(self.cert(name), cert.public_bytes(serialization.Encoding.PEM))
        return identities[name]

    def revoke(self, name: str) -> None:
        """Revoke every certificate ever issued to ``name`` (each rotation's too); the broker
        refuses them after reload."""
        identities = self.identities()
        if name not in identities:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"unknown identity {name!r}")
        serials = list(identities[name].serials)
        if self.cert(name).exists():
            serials.append(_serial(self.cert(name)))
        revoked_file = self.folder / "revoked.json"
        revoked = json.loads(revoked_file.read_text()) if revoked_file.exists() else []
        revoked += [s for s in dict.fromkeys(serials) if s not in revoked]
        _write_pem(self.folder / "revoked.json", json.dumps(revoked).encode())
        self._write_crl(revoked)
        identities[name] = replace(identities[name], revoked=True)
        self._save(identities)

    def _write_crl(self, serials: list[int]) -> None:
        ca_cert, ca_key = self._load_ca()
        builder = (
            x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
            .last_update(_now() - dt.timedelta(minutes=5)).next_update(_now() + dt.timedelta(days=30))
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(_now()).build()
            )
        _write_pem(self.crl, builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
