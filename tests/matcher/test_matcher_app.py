"""``appliance matcher`` builds its replica from the typed configuration (no broker needed to
build it): the configured pack and threshold, a full replica on the site's stores."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from appliance.config import registry_for, threshold_for, with_overrides
from appliance.matcher.app import build
from appliance.protocol import topics
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person
from appliance.security.roles import Principal, Role
from appliance.site import Site
from appliance.vision.templates import Template, normalise


def test_the_replica_is_built_from_the_configuration(tmp_path, config):
    site = Site(tmp_path / "site")
    site.provision(("door-a",), matchers=("matcher-7",))
    config = with_overrides(config, matcher={"name": "matcher-7", "request_gather_ms": 12.5})
    pack = registry_for(config).get(config.models.embedder)
    data = site.protected_data(config)
    operator = Principal("enroller", Role.OPERATOR)
    try:
        data.register_person(operator, Person("s-1", "Ana Lima", AgeBand.ADULT, Alternative.CARD, card_no="C-1"))
        data.record_consent(operator, ConsentRecord("s-1", ENROLL_SCOPE, "v1", 0.0, "Ana Lima"))
        vector = normalise(np.random.default_rng(0).normal(size=pack.embedding_size)).astype(np.float32)
        data.enroll(operator, "s-1", Template(vector, pack.id, pack.version), np.zeros(1, np.float32))
    finally:
        data.close()
    app = build(config, site)
    try:
        matcher = app.matcher
        assert app.name == "matcher-7" and app.pack == pack
        assert matcher.requests.engine.threshold == threshold_for(config, pack.id, pack.recommended_threshold)
        assert len(matcher.loaded.gallery) == 1 and matcher.loaded.claims == {"C-1": "s-1"}
        assert matcher.loaded.display_names == {"s-1": "A** L***"}
        # one filter per device it knows and kind it reads (a muted device can be shed at the broker)
        assert set(matcher.service.subscriptions) == {topics.shared(topics.device_topic("door-a", kind)) for kind in
                                                      (topics.REQUEST, topics.EVENT, topics.ALARM, topics.SYNC_ACK,
                                                       topics.CREDENTIAL)}
        assert matcher.revisions.per_message == 13 and matcher.store is not None
        assert matcher.requests.route.worker.gather_s == 0.0125  # [matcher] request_gather_ms
        assert matcher.endpoint is None  # nothing connects before start
    finally:
        app.close()


# a replica decides on templates: it must not load an image library or a model runtime (OpenCV
# alone is ~29 MB of each replica's memory and 0.13 s of its start)
IMAGE_AND_MODEL_RUNTIMES = {"cv2", "mediapipe", "onnxruntime", "ai_edge_litert", "dlib"}
BUILD_IN_A_NEW_PROCESS = """
import json, sys
from pathlib import Path
from appliance.config import load_config, with_overrides
from appliance.matcher.app import build
from appliance.site import Site
site = Site(Path(sys.argv[1]))
site.provision(("door-a",), matchers=("matcher-7",))
build(with_overrides(load_config(), matcher={"name": "matcher-7"}), site).close()
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_the_replica_loads_no_image_library_nor_model_runtime(tmp_path):
    built = subprocess.run([sys.executable, "-c", BUILD_IN_A_NEW_PROCESS, str(tmp_path / "site")],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr[-2000:]
    loaded = set(json.loads(built.stdout.splitlines()[-1]))
    assert "appliance" in loaded
    assert loaded.isdisjoint(IMAGE_AND_MODEL_RUNTIMES), sorted(loaded & IMAGE_AND_MODEL_RUNTIMES)
