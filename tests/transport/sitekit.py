"""Helpers for the transport tests: a provisioned site with enrolled people."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from appliance.capture.images import read_image
from appliance.enrollment import enroll
from appliance.matcher.app import Matcher, compose
from appliance.matcher.loaded import load_gallery
from appliance.ops import provisioning
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.roles import Principal, Role
from appliance.site import Site

DEVICES = ("door-a", "door-b")
PEOPLE = {"id07201": ("Zhang San", "C-1001"), "id07212": ("王小明", "C-1002"), "id07229": ("Ana Lima", "C-1003")}
OPERATOR = Principal("enroller", Role.OPERATOR)


def make_site(tmp_path_factory, pipeline, faces, config):
    site = Site(tmp_path_factory.mktemp("site"))
    site.provision(DEVICES, matchers=("matcher-1", "matcher-2"), auditors=("auditor-1",))
    data = site.protected_data(config)
    for folder, (name, card) in PEOPLE.items():
        subject = new_subject_id()
        data.register_person(OPERATOR, Person(subject, name, AgeBand.ADULT, Alternative.CARD, card_no=card))
        data.record_consent(OPERATOR, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), name))
        files = sorted((faces / "celeba-dev" / folder).glob("*.jpg"))
        result = enroll(pipeline, (read_image(p) for p in files[:5]))
        assert result.enrolled
        data.enroll(OPERATOR, subject, result.template, np.zeros(1, np.float32))
    site.broker.start()
    site.data = data
    return site


def start_matcher(site, pipeline, name="matcher-1", **options) -> Matcher:
    """A replica without a sync store: requests decided, events and alarms counted and audited
    (``options``: more of ``compose``'s, e.g. the gate's ``limits``)."""
    loaded = load_gallery(site.data, Principal(name, Role.OPERATOR), pipeline.embedder_pack)
    matcher = compose(name, site.mqtt(name), site.data.node, site.directory, loaded, pipeline.threshold,
                      data=site.data,
                      device_allowed=lambda device, mode: provisioning.is_allowed(site.broker.pki, device, mode),
                      **options)
    return matcher.start()


def passing_image(pipeline, folder: Path, skip: int = 0) -> Path:
    """A real image of the person that passes the verification profile (a cooperative visitor)."""
    for path in sorted(folder.glob("*.jpg"))[skip:]:
        analysis, template = pipeline.template(read_image(path))
        if template is not None and analysis.quality.passed:
            return path
    raise AssertionError(f"no usable image in {folder}")


def frames_folder(tmp_path: Path, images: list[Path], repeat: int = 3) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir(exist_ok=True)
    for index, image in enumerate(images):
        for copy in range(repeat):
            shutil.copy(image, folder / f"{index:03d}-{copy}{image.suffix}")
    return folder


