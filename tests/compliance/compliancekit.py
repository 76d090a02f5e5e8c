"""Sites to report on (the fixtures are in ``conftest``): a fresh one (accounts and keys only)
and a demo-like one (a PKI with two doors, people enrolled with consent under real names, one
of them deleted).

Everything is real: SQLCipher stores and key files in the test's folder, the project PKI, the
account store through ``authkit``; templates are unit vectors (no model is needed to store one).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from appliance.config import Config, load_config
from appliance.matcher.sync_store import open_sync_store
from appliance.security.consent import (
    ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id,
)
from appliance.security.roles import Principal, Role
from appliance.site import Site
from appliance.stores.protected import ProtectedData, key_provider
from appliance.vision.templates import Template
from authkit import make_token

# who the demo people are: every one of these strings must stay out of every report
PEOPLE = (("Zhang San", "110101199003074512", "13812345678"), ("张三丰", "110101198801015678", "13987654321"),
          ("Maria Rossi", "220102199512120034", "13700001111"))
TEMPLATE_DIM = 512
OPERATOR = Principal("op-kit", Role.OPERATOR)
SECURITY = Principal("sec-kit", Role.SECURITY_ADMIN)
AUDITOR = Principal("aud-kit", Role.AUDITOR)
SYSADMIN = Principal("sys-kit", Role.SYSTEM_ADMIN)
DOORS = ("door-a", "door-b")


@dataclass
class DemoSite:
    folder: Path
    config_file: Path
    config: Config
    subjects: list[str]
    deleted: str
    tombstone_revision: int

    def data(self) -> ProtectedData:
        return ProtectedData.from_config(self.config, self.folder)

    def sync_store(self, data: ProtectedData):
        return open_sync_store(data, key_provider(self.config.security, self.folder))

    def token(self, role: Role) -> str:
        return make_token(self.folder, role, config=self.config)


def _config(folder: Path) -> tuple[Path, Config]:
    """A site configuration whose keys live in ``folder/keys`` (the data folder's default)."""
    path = folder / "site.toml"
    path.write_text("[security]\nnode_id = \"matcher\"\n", encoding="utf-8")
    return path, load_config(path)


def fresh_site_in(tmp_path: Path) -> DemoSite:
    """Keys and accounts, nothing else: no PKI, no people, no sync store."""
    folder = tmp_path / "fresh"
    folder.mkdir()
    path, config = _config(folder)
    make_token(folder, Role.AUDITOR, config=config)  # bootstraps the accounts and the keys
    return DemoSite(folder, path, config, [], "", 0)


def _vector(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(TEMPLATE_DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def demo_site_in(tmp_path: Path) -> DemoSite:
    """Two doors with certificates, three people enrolled with consent, the last one deleted;
    neither door has confirmed the deletion yet."""
    folder = tmp_path / "demo"
    site = Site(folder)
    site.provision(DOORS, matchers=("matcher-1",))
    path, config = _config(folder)
    make_token(folder, Role.AUDITOR, config=config)
    subjects = []
    with ProtectedData.from_config(config, folder) as data:
        for seed, (name, id_number, phone) in enumerate(PEOPLE):
            subject = new_subject_id()
            data.register_person(OPERATOR, Person(subject, name, AgeBand.ADULT, Alternative.CARD,
                                                  id_number=id_number, phone=phone))
            data.record_consent(OPERATOR, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), name,
                                                        reference=f"form {id_number}"))
            data.enroll(OPERATOR, subject, Template(_vector(seed), "w600k-mbf", "1.0.0"), np.zeros(1, np.float32))
            subjects.append(subject)
        receipt = data.delete_subject(SECURITY, subjects[-1])
    return DemoSite(folder, path, config, subjects, subjects[-1], receipt.tombstone_revision)
