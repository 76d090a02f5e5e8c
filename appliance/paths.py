"""Where the appliance finds its files: one place for every path setting.

Two layouts, told apart by :func:`checkout_root`:

* **a source checkout** (``scripts/bootstrap.sh``, tests, the demo): the repo's
  ``config/appliance.toml`` and ``models/``, runtime data in ``var/``, set-up caches in
  ``.cache/``, the shared data folder beside the checkout (``../shared``);
* **an installed package** (a wheel in ``/opt/appliance/venv`` or a Debian package): the
  defaults shipped inside the package (``appliance/defaults/``, copied there by the build:
  ``setup.py``), the Filesystem Hierarchy Standard places for everything a host owns:
  ``/etc/appliance/appliance.toml``, ``/var/lib/appliance`` and ``/var/cache/appliance``.

Environment variables override both, so that tests, CI and deployments point at their own
folders without editing code:

* ``APPLIANCE_CONFIG`` - the configuration file;
* ``APPLIANCE_DATA_DIR`` - runtime data (stores, keys, PKI, status records);
* ``APPLIANCE_SHARED_DATA`` - datasets and third-party weights kept outside the repo;
* ``APPLIANCE_MODEL_PATH`` - extra model-pack folders, ``os.pathsep``-separated;
* ``APPLIANCE_CONVERTED_MODELS`` - model files derived or extracted at set-up (converted
  ONNX files, files taken from registry wheels); always on the model search path;
* ``APPLIANCE_CONVERTER_PYTHON`` - the python that converts model packs (its own venv).
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# the folder above the package: the checkout in development, site-packages when installed
REPO_ROOT = PACKAGE_DIR.parent
# defaults the build copies into the package (config/, models/*/manifest.toml); see setup.py
DEFAULTS_DIR = PACKAGE_DIR / "defaults"

# the installed layout (FHS)
ETC_CONFIG = Path("/etc/appliance/appliance.toml")
VAR_LIB = Path("/var/lib/appliance")
VAR_CACHE = Path("/var/cache/appliance")
INSTALLED_SHARED = Path("/usr/local/share/appliance")

CONVERTER_PYTHON_ENV = "APPLIANCE_CONVERTER_PYTHON"

# files that mark a source checkout (an installed package has none of them above it)
_CHECKOUT_MARKERS = ("setup.cfg", "config/appliance.toml", "models")


def checkout_root() -> Path | None:
    """The source checkout this package runs from, or None for an installed package."""
    if all((REPO_ROOT / marker).exists() for marker in _CHECKOUT_MARKERS):
        return REPO_ROOT
    return None


def resource(relpath: str | Path) -> Path:
    """A file shipped with the product (``config/...``, ``models/...``): the checkout's own
    file when run from a checkout, else the copy inside the installed package."""
    root = checkout_root()
    return (root if root is not None else DEFAULTS_DIR) / relpath


def default_config_file() -> Path:
    """The configuration shipped with the product (what ``appliance config init`` copies)."""
    return resource("config/appliance.toml")


def config_file() -> Path:
    """``APPLIANCE_CONFIG``; else the checkout's config; else ``/etc/appliance/appliance.toml``
    when the host has one; else the packaged default."""
    if "APPLIANCE_CONFIG" in os.environ:
        return Path(os.environ["APPLIANCE_CONFIG"])
    if checkout_root() is None and ETC_CONFIG.is_file():
        return ETC_CONFIG
    return default_config_file()


def data_dir() -> Path:
    if "APPLIANCE_DATA_DIR" in os.environ:
        return Path(os.environ["APPLIANCE_DATA_DIR"])
    root = checkout_root()
    return root / "var" if root is not None else VAR_LIB


def cache_dir() -> Path:
    """Set-up caches (downloaded wheels, the converter's venv): safe to delete."""
    root = checkout_root()
    return root / ".cache" if root is not None else VAR_CACHE


def reports_dir() -> Path:
    """Default output folder of benchmarks."""
    root = checkout_root()
    return root / "reports" if root is not None else data_dir() / "reports"


def shared_dir() -> Path:
    if "APPLIANCE_SHARED_DATA" in os.environ:
        return Path(os.environ["APPLIANCE_SHARED_DATA"]).resolve()
    root = checkout_root()
    return (root.parent / "shared").resolve() if root is not None else INSTALLED_SHARED


def converted_models_dir() -> Path:
    """Model files made at set-up (converted, or extracted from registry wheels) live here,
    never inside the package or the repo's files."""
    if "APPLIANCE_CONVERTED_MODELS" in os.environ:
        return Path(os.environ["APPLIANCE_CONVERTED_MODELS"])
    root = checkout_root()
    return root / ".cache" / "models" if root is not None else data_dir() / "models"


def model_search_path(extra: tuple[str, ...] = ()) -> list[Path]:
    """Folders holding model packs, highest priority first (duplicates removed)."""
    env = [p for p in os.environ.get("APPLIANCE_MODEL_PATH", "").split(os.pathsep) if p]
    candidates = [Path(p) for p in (*env, *extra)]
    candidates += [resource("models"), converted_models_dir(), shared_dir() / "models"]
    seen: list[Path] = []
    for path in candidates:
        resolved = path.expanduser().resolve()
        if resolved not in seen:
            seen.append(resolved)
    return seen
