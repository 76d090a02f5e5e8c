"""Where the appliance finds its files: one place for every path setting.

Environment variables override the defaults so that tests, CI and deployments can point at
their own folders without editing code:

* ``APPLIANCE_SHARED_DATA`` - datasets and third-party weights kept outside the repo
  (default: ``../shared`` beside the checkout);
* ``APPLIANCE_MODEL_PATH`` - extra model-pack folders, ``os.pathsep``-separated;
* ``APPLIANCE_CONFIG`` - the configuration file (default ``config/appliance.toml``);
* ``APPLIANCE_DATA_DIR`` - runtime data (stores, reports; default ``var/`` in the checkout);
* ``APPLIANCE_CONVERTED_MODELS`` - model files derived at set-up from third-party weights
  (default ``.cache/models`` in the checkout); always on the model search path.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    return Path(os.environ.get("APPLIANCE_SHARED_DATA", REPO_ROOT.parent / "shared")).resolve()


def config_file() -> Path:
    return Path(os.environ.get("APPLIANCE_CONFIG", REPO_ROOT / "config" / "appliance.toml"))


def data_dir() -> Path:
    return Path(os.environ.get("APPLIANCE_DATA_DIR", REPO_ROOT / "var"))


def converted_models_dir() -> Path:
    """Set-up conversions (e.g. MiniFASNet .pth -> ONNX) write here, outside the repo's files."""
    return Path(os.environ.get("APPLIANCE_CONVERTED_MODELS", REPO_ROOT / ".cache" / "models"))


def model_search_path(extra: tuple[str, ...] = ()) -> list[Path]:
    """Folders holding model packs, highest priority first (duplicates removed)."""
    env = [p for p in os.environ.get("APPLIANCE_MODEL_PATH", "").split(os.pathsep) if p]
    candidates = [Path(p) for p in (*env, *extra)]
    candidates += [REPO_ROOT / "models", converted_models_dir(), shared_dir() / "models"]
    seen: list[Path] = []
    for path in candidates:
        resolved = path.expanduser().resolve()
        if resolved not in seen:
            seen.append(resolved)
    return seen
