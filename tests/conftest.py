"""Shared fixtures: the shared data folder and one pipeline with real models per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI does (appliance/cli/main.py)

from appliance import paths  # noqa: E402
from appliance.config import load_config  # noqa: E402


@pytest.fixture(scope="session")
def shared() -> Path:
    root = paths.shared_dir()
    if not (root / "data" / "faces").is_dir():
        pytest.fail(
            f"shared data not found at {root}: set APPLIANCE_SHARED_DATA to the folder described in "
            "../shared/README.md (datasets and model weights are never copied into the repo)"
        )
    return root


@pytest.fixture(scope="session")
def faces(shared: Path) -> Path:
    return shared / "data" / "faces"


@pytest.fixture(scope="session")
def config():
    return load_config()


@pytest.fixture(scope="session")
def pipeline(config, shared):
    from appliance.pipeline import FacePipeline

    face_pipeline = FacePipeline(config)
    yield face_pipeline
    face_pipeline.close()


@pytest.fixture
def keys(tmp_path):
    """Real key files (0600 in a 0700 folder) in the test's own folder."""
    from appliance.security.keys import FileKeyProvider, ensure_keys

    provider = FileKeyProvider(tmp_path / "keys")
    ensure_keys(provider)
    return provider


@pytest.fixture
def principals():
    """One principal per role."""
    from appliance.security.roles import Principal, Role

    return {role: Principal(f"acct-{role.name.lower()}", role) for role in Role}
