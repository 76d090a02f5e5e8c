"""Edge fixtures: the liveness checker on the real MiniFASNet pack and the repo's calibration,
the shared faces, an embedder call counter; the broker-backed helpers of tests/offline (offkit)
for the CLI run."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "offline"))  # offkit: a site with a broker


@pytest.fixture(scope="session")
def checker(config, pipeline):
    from appliance.liveness.checker import LivenessChecker

    return LivenessChecker(config.liveness, pipeline.registry)


@pytest.fixture(scope="session")
def active_checker(config, pipeline, checker):
    from appliance.liveness.checker import LivenessChecker

    return LivenessChecker(dataclasses.replace(config.liveness, level="active"), pipeline.registry,
                           calibration=checker.calibration)


@pytest.fixture(scope="session")
def spoof_samples(shared):
    return shared / "data" / "spoof" / "samples"


@pytest.fixture(scope="session")
def yale(faces):
    return faces / "yale"


@pytest.fixture
def embed_calls(pipeline, monkeypatch):
    """Counts calls of the real embedder (still runs it): the proof that no template is made."""
    calls = []
    real = pipeline.embedder.embed_crops

    def counting(crops, flip_fusion=True):
        calls.append(len(crops))
        return real(crops, flip_fusion)

    monkeypatch.setattr(pipeline.embedder, "embed_crops", counting)
    return calls
