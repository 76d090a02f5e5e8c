"""The PKI registry remembers every certificate an identity was issued, so revocation covers
each rotation's certificate (the broker side is in ``tests/ops/test_revocation.py``)."""
from __future__ import annotations

import json

import pytest
from cryptography import x509

from appliance.broker.pki import REGISTRY, ProjectPKI
from appliance.errors import ApplianceError
from appliance.ops import provisioning


def serial(path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def revoked_serials(pki: ProjectPKI) -> set[int]:
    return {entry.serial_number for entry in x509.load_pem_x509_crl(pki.crl.read_bytes())}


@pytest.fixture
def pki(tmp_path):
    site = ProjectPKI(tmp_path / "pki")
    site.create_ca()
    return site


def test_rotation_keeps_every_serial_and_revocation_lists_them_all(pki):
    provisioning.enroll_device(pki, "door-a")
    issued = [serial(pki.cert("door-a"))]
    for _ in range(2):
        provisioning.rotate(pki, "door-a")
        issued.append(serial(pki.cert("door-a")))
    provisioning.enroll_device(pki, "door-b")
    assert pki.identities()["door-a"].serials == tuple(issued)
    pki.revoke("door-a")
    assert revoked_serials(pki) == set(issued)  # door-b untouched
    assert pki.identities()["door-a"].revoked and pki.identities()["door-a"].serials == tuple(issued)


def test_a_registry_from_before_serials_still_revokes_the_certificate_on_file(pki):
    provisioning.enroll_device(pki, "door-a")
    registry = pki.folder / REGISTRY
    entries = json.loads(registry.read_text())
    entries["door-a"].pop("serials")
    registry.write_text(json.dumps(entries))
    before = serial(pki.cert("door-a"))
    provisioning.rotate(pki, "door-a")  # the legacy certificate's serial is recorded first
    assert pki.identities()["door-a"].serials == (before, serial(pki.cert("door-a")))
    pki.revoke("door-a")
    assert revoked_serials(pki) == {before, serial(pki.cert("door-a"))}


def test_a_revoked_identity_cannot_be_issued_again(pki):
    pki.issue_client("matcher-9", "matcher")
    pki.revoke("matcher-9")
    with pytest.raises(ApplianceError):
        pki.issue_client("matcher-9", "matcher")
    with pytest.raises(ApplianceError):
        provisioning.rotate(pki, "matcher-9")
    assert pki.identities()["matcher-9"].revoked
