"""Helpers for the offline tests: a site with synthetic enrolled people (real stores, real
broker), matchers in-process or as real ``appliance matcher`` processes, probes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from appliance.config import OfflineConfig
from appliance.matcher.app import Matcher, compose
from appliance.matcher.eligibility import LOCAL_MATCH_SCOPE
from appliance.matcher.loaded import LoadedGallery
from appliance.matcher.sync_store import open_sync_store
from appliance.matching import Gallery
from appliance.packs import ModelPack
from appliance.protocol import messages
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.keys import FileKeyProvider
from appliance.security.roles import Principal, Role
from appliance.site import Site
from appliance.stores.protected import KEYS_DIR
from appliance.vision.templates import Template
import polling

PACK = ("w600k-mbf", "1.0.0")
DIMENSION = 512
DEVICES = ("door-a", "door-b", "door-c")
OPERATOR = Principal("enroller", Role.OPERATOR)
ADMIN = Principal("secadmin", Role.SECURITY_ADMIN)
REPO = Path(__file__).resolve().parents[2]


def unit(rng) -> np.ndarray:
    vector = rng.normal(size=DIMENSION).astype(np.float32)
    return vector / np.linalg.norm(vector)


def enroll_person(data, rng, name: str, card: str = "", local: bool = True) -> tuple[str, np.ndarray]:
    subject = new_subject_id()
    data.register_person(OPERATOR, Person(subject, name, AgeBand.ADULT, Alternative.CARD, card_no=card))
    data.record_consent(OPERATOR, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), name))
    if local:
        data.record_consent(OPERATOR, ConsentRecord(subject, LOCAL_MATCH_SCOPE, "v1", time.time(), name))
    vector = unit(rng)
    data.enroll(OPERATOR, subject, Template(vector, *PACK), np.zeros(1, np.float32))
    return subject, vector


def enroll_real_person(site, pipeline, image: Path, name: str) -> str:
    """Enroll the face in ``image`` (a real template from the pipeline) with both consents."""
    from appliance.capture.images import read_image

    subject = new_subject_id()
    site.data.register_person(OPERATOR, Person(subject, name, AgeBand.ADULT, Alternative.CARD))
    for scope in (ENROLL_SCOPE, LOCAL_MATCH_SCOPE):
        site.data.record_consent(OPERATOR, ConsentRecord(subject, scope, "v1", time.time(), name))
    template = pipeline.template(read_image(image))[1]
    assert (template.pack_id, template.pack_version) == PACK
    site.data.enroll(OPERATOR, subject, template, np.zeros(1, np.float32))
    return subject


def make_site(folder: Path, config, people: int = 8, seed: int = 0, central: Path | None = None):
    """A site in ``folder`` (its central stores in ``central`` if given) with ``people`` enrolled."""
    site = Site(folder, central=central)
    site.provision(DEVICES, matchers=("matcher-1", "matcher-2"), integrations=("erp",))
    data = site.protected_data(config)
    rng = np.random.default_rng(seed)
    site.people = {}
    for index in range(people):
        subject, vector = enroll_person(data, rng, f"Person Number{index}", card=f"C-{index:04d}")
        site.people[subject] = vector
    site.broker.start()
    site.data = data
    site.rng = rng
    return site


def probe_of(vector: np.ndarray, rng, noise: float = 0.02) -> np.ndarray:
    noisy = vector + rng.normal(scale=noise, size=vector.shape).astype(np.float32)
    return (noisy / np.linalg.norm(noisy)).astype(np.float32)


def request(device: str, vector: np.ndarray, claim: str = "") -> messages.MatchRequest:
    return messages.MatchRequest(messages.new_id(), device, "verify" if claim else "identify",
                                 messages.MatchRequest.pack_vector(vector), time.time(), claim=claim)


def pack_model() -> ModelPack:
    from appliance.packs import registry

    return registry().get(PACK[0]) if hasattr(registry(), "get") else None


CENTRAL_REASON = "test site: the matcher answers every door; decided by the offline kit"


def justify_central(data, store) -> None:
    """Record the site's central-matching justification once (the kits' sites match
    centrally, as before the decision was required; ``central=False`` leaves it out)."""
    from appliance.matcher.site_policy import central_allowed, justify

    if not central_allowed(store):
        justify(data, store, ADMIN, CENTRAL_REASON)


def start_matcher(site, threshold: float = 0.4, name: str = "matcher-1", snapshot_after: int = 5000,
                  central: bool = True) -> Matcher:
    """A full replica in this process, with its own store connections (as a matcher process
    has: one SQLite connection is not shared by threads); ``stop`` closes them too.
    ``central``: record the site's justification for central matching first."""
    from appliance.security.masking import mask_name
    from appliance.stores.protected import ProtectedData

    principal = Principal(name, Role.OPERATOR)
    gallery = Gallery(*PACK, DIMENSION)
    claims, names = {}, {}
    data = ProtectedData(site.central, FileKeyProvider(site.central / KEYS_DIR), site.data.security)
    for subject in data.identity.subject_ids(principal):
        if not data.biometric.rows(subject):
            continue
        person = data.identity.person(principal, subject)
        gallery.upsert(subject, data.biometric.template(principal, subject, *PACK, data.vault))
        claims[person.card_no] = subject
        names[subject] = mask_name(person.name)
    store = open_sync_store(data, FileKeyProvider(site.central / KEYS_DIR))
    if central:
        justify_central(data, store)
    matcher = compose(name, site.mqtt(name), data.node, site.directory, LoadedGallery(gallery, claims, names),
                      threshold, data=data, sync_store=store, snapshot_after=snapshot_after, poll_s=0.1)
    matcher.start()
    stop = matcher.stop

    def stop_and_close() -> None:
        stop()
        data.close()

    matcher.stop = stop_and_close
    return matcher


def matcher_process(site, config_path: Path | None = None, name: str = "matcher-1") -> subprocess.Popen:
    store = open_sync_store(site.data, FileKeyProvider(site.central / KEYS_DIR))
    try:
        justify_central(site.data, store)
    finally:
        store.close()
    command = [sys.executable, "-m", "appliance"]
    if config_path:
        command += ["--config", str(config_path)]
    command += ["matcher", "--site", str(site.folder), "--port", str(site.broker.port), "--host", "127.0.0.1",
                "--name", name]
    # the test site declares its use (research: the shared data's terms), so no licence warning precedes "ready"
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(site.folder / "data"), "APPLIANCE__LIVENESS__LEVEL": "off",
           "APPLIANCE__SITE__USE": "research"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=REPO)
    line = process.stdout.readline()
    assert "ready" in line, line + (process.stdout.read() if process.poll() is not None else "")
    return process


def offline_config(**changes) -> OfflineConfig:
    return OfflineConfig(**{"digest_every_s": 3600.0, **changes})


def wait_for(predicate, timeout: float = 10.0) -> bool:
    """The offline tests wait longer by default: they restart processes."""
    return polling.wait_for(predicate, timeout)
