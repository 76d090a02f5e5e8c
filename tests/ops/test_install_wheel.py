"""The built wheel, installed in a new venv outside the checkout and run from ``/``.

This is how a door without a checkout gets the product: nothing of the repo may be needed at
run time. The defaults (configuration, pack manifests, the broker template) must come from
the package; model files go to the installed layout's model folder (here a temporary data
folder), the MiniFASNet file is converted with the checkout's converter venv (the torch one
that scripts/bootstrap.sh made) and verified numerically by the installed package.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from appliance import paths
from appliance.packs.convert import CONVERT_VENV

PIP_TIMEOUT_S = 900
COMMAND_TIMEOUT_S = 300
NOT_SOURCES = (".git", ".venv", ".cache", "var", "build", "dist", "reports", "*.egg-info", "__pycache__",
               "*.onnx", "*.task", "*.dat", "*.tflite")


def _run(command: list[str], env: dict[str, str], cwd: str = "/", timeout: float = COMMAND_TIMEOUT_S):
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("wheel")
    # build from a copy of the sources: a stale build/ folder in the checkout must not leak in
    sources = root / "src"
    shutil.copytree(paths.REPO_ROOT, sources, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    venv = root / "venv"
    making_venv = subprocess.Popen([sys.executable, "-m", "venv", str(venv)])  # meanwhile, the wheel is built
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(sources)],
                 dict(os.environ), cwd=str(root), timeout=PIP_TIMEOUT_S)
    assert making_venv.wait(timeout=COMMAND_TIMEOUT_S) == 0, "python -m venv failed"
    assert built.returncode == 0, built.stderr
    wheel = next((root / "dist").glob("face_appliance-*.whl"))
    # the checkout's pip installs into the new venv (--python: no second pip to start), and
    # --no-compile leaves byte-compiling to the first import: compiling every module of every
    # dependency took most of the install's time, and what runs here compiles what it imports
    pip = _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                "--no-compile", "-c", str(paths.REPO_ROOT / "constraints.txt"), str(wheel)], dict(os.environ),
               timeout=PIP_TIMEOUT_S)
    assert pip.returncode == 0, pip.stderr
    # a clean environment: no APPLIANCE_* of the test run leaks in, only the shared folder
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    env.update(APPLIANCE_SHARED_DATA=str(paths.shared_dir()), APPLIANCE_DATA_DIR=str(root / "var-lib-appliance"))
    return venv / "bin" / "appliance", env


def test_installed_package_runs_outside_the_checkout(installed):
    appliance, env = installed
    commands = ([str(appliance.parent / "python"), "-c", "import appliance, sys; print(appliance.__file__)"],
                [str(appliance), "config", "path"], [str(appliance), "config", "check"],
                [str(appliance), "models", "list"])
    with ThreadPoolExecutor(len(commands)) as pool:  # independent reads: run side by side
        where, config_path, checked, listed = pool.map(lambda command: _run(command, env), commands)
    assert where.returncode == 0 and str(paths.REPO_ROOT) not in where.stdout, where.stdout
    # the host's /etc/appliance/appliance.toml when it has one, else the copy inside the package
    expected = str(paths.ETC_CONFIG) if paths.ETC_CONFIG.is_file() else "/appliance/defaults/config/appliance.toml"
    assert config_path.returncode == 0 and expected in config_path.stdout, config_path.stdout + config_path.stderr
    assert checked.returncode == 0, checked.stderr
    assert listed.returncode == 0 and "w600k-mbf" in listed.stdout and "minifasnet-silentface" in listed.stdout


def test_installed_package_installs_converts_and_verifies_models(installed):
    appliance, env = installed
    convert_python = paths.cache_dir() / CONVERT_VENV / "bin" / "python"
    if not convert_python.is_file():
        pytest.fail(f"{convert_python} missing: scripts/bootstrap.sh makes it")
    # the checkout's wheel cache saves downloads; the files land in the installed layout
    installed_models = _run([str(appliance), "models", "install", "--sources-only",
                             "--cache", str(paths.cache_dir() / "wheels")], env)
    assert installed_models.returncode == 0, installed_models.stdout + installed_models.stderr
    converted = _run([str(appliance), "models", "convert", "--python", str(convert_python)], env)
    assert converted.returncode == 0, converted.stdout + converted.stderr
    verified = _run([str(appliance), "models", "verify"], env)
    assert verified.returncode == 0, installed_models.stdout + verified.stdout + verified.stderr
    model_files = Path(env["APPLIANCE_DATA_DIR"]) / "models"
    assert (model_files / "w600k-mbf" / "w600k_mbf.onnx").is_file()
    assert (model_files / "minifasnet-silentface" / "minifasnet_v2_v1se.onnx").is_file()
    assert "numerical check: max abs error" in verified.stdout
    # the int8 embedder, quantised here by the installed package (its only fresh conversion in the suite)
    int8 = model_files / "w600k-mbf-int8" / "w600k_mbf_int8_w7.onnx"
    provenance = json.loads(int8.with_name(int8.name + ".provenance.json").read_text())
    assert provenance["calibration"]["split"] == "a" and provenance["calibration"]["crops"] > 0
    assert provenance["check"]["min_cosine"] >= provenance["check"]["min_cosine_bound"]
