"""Derive a converted pack's model file at set-up: ``appliance models convert``.

The steps make the file trustworthy without trusting its bytes: the inputs must have the
manifest's sha256, the converter venv must hold exactly the manifest's pinned packages, and
the output must pass the pack's numerical check before it is moved into place. A
provenance JSON beside the file records what was used, including the output's sha256 on
this machine (for the record, not for verification: another CPU gives other bytes).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from appliance import paths
from appliance.digests import sha256_file
from appliance.durable_file import SHARED, replace_durably, write_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs import numeric_check
from appliance.packs.manifest import CONVERTED, ModelPack, parse_pin
from appliance.packs.registry import PackRegistry

CONVERT_VENV = "convert-venv"  # below paths.cache_dir(): made by scripts/bootstrap.sh
CONVERT_TIMEOUT_S = 900  # a torch import and export on a slow 2-core board
VERSIONS_TIMEOUT_S = 60
PROVENANCE_SUFFIX = ".provenance.json"
LOCAL_VERSION = "+"  # PEP 440 local label: torch 2.13.0+cpu satisfies the pin torch==2.13.0
ERROR_TAIL_LINES = 3
# run by the converter python, isolated: the installed versions of the named distributions
VERSIONS_SNIPPET = (
    "import json, sys\n"
    "from importlib import metadata\n"
    "def version(name):\n"
    "    try:\n"
    "        return metadata.version(name)\n"
    "    except metadata.PackageNotFoundError:\n"
    "        return None\n"
    "print(json.dumps({name: version(name) for name in sys.argv[1:]}))\n"
)


@dataclass(frozen=True)
class Conversion:
    path: Path
    provenance: Path
    sha256: str
    threads: int
    result: numeric_check.CheckResult


def default_converter_python() -> Path:
    """$APPLIANCE_CONVERTER_PYTHON, else the repo's throw-away convert venv, else this python."""
    configured = os.environ.get(paths.CONVERTER_PYTHON_ENV)
    if configured:
        return Path(configured)
    venv_python = paths.cache_dir() / CONVERT_VENV / "bin" / "python"
    return venv_python if venv_python.is_file() else Path(sys.executable)


def converter_script(pack: ModelPack) -> Path:
    """The converter module's file: it is run by path, never imported into this process."""
    spec = importlib.util.find_spec(pack.source.converter)
    if spec is None or spec.origin is None:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{pack.label}: converter {pack.source.converter!r} not found")
    return Path(spec.origin)


def input_files(registry: PackRegistry, pack: ModelPack) -> list[Path]:
    """Each input found on the model search path, with the manifest's sha256."""
    found = []
    for relpath, expected in zip(pack.source.inputs, pack.source.input_sha256):
        path = next((folder / relpath for folder in registry.search_path if (folder / relpath).is_file()), None)
        if path is None:
            raise ApplianceError(
                ErrorCode.FILE_NOT_FOUND,
                f"{pack.label}: input {relpath} not on the model search path (set APPLIANCE_SHARED_DATA)",
            )
        actual = sha256_file(path)
        if actual != expected:
            raise ApplianceError(
                ErrorCode.PACK_CHECKSUM, f"{path}: sha256 {actual[:16]}... expected {expected[:16]}..."
            )
        found.append(path)
    return found


def _run(command: list[str], timeout: float, what: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ApplianceError(ErrorCode.DEPENDENCY_MISSING, f"converter python {command[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{what}: no answer in {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-ERROR_TAIL_LINES:]) or f"exit status {done.returncode}"
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{what} failed: {tail}")
    return done.stdout


def installed_versions(python: Path, names: list[str]) -> dict[str, str | None]:
    """Ask the converter python which versions of ``names`` it has (no import of torch)."""
    out = _run([str(python), "-I", "-c", VERSIONS_SNIPPET, *names], VERSIONS_TIMEOUT_S, f"{python} (versions)")
    return json.loads(out)


def pin_satisfied(pinned: str, installed: str | None) -> bool:
    """``==`` of PEP 440 for an exact pin: a local label (``+cpu``) is ignored unless pinned."""
    if installed is None:
        return False
    if LOCAL_VERSION not in pinned:
        installed = installed.split(LOCAL_VERSION, 1)[0]
    return installed == pinned


def check_pins(pack: ModelPack, python: Path) -> dict[str, str | None]:
    """The converter venv's versions; an error unless they are the manifest's exact pins."""
    pins = dict(parse_pin(requirement) for requirement in pack.source.converter_requires)
    versions = installed_versions(python, list(pins))
    wrong = [f"{name} {versions.get(name) or 'missing'} (pinned {pinned})"
             for name, pinned in pins.items() if not pin_satisfied(pinned, versions.get(name))]
    if wrong:
        raise ApplianceError(
            ErrorCode.PACK_INVALID,
            f"{pack.label}: converter python {python} has {', '.join(wrong)}; "
            f"install {' '.join(pack.source.converter_requires)} into it",
        )
    return versions


def _report(stdout: str, pack: ModelPack) -> dict:
    """The converter's closing JSON line (threads and versions it used)."""
    lines = stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{pack.label}: converter printed no JSON report")
    return report


def convert_pack(registry: PackRegistry, pack: ModelPack, python: Path, threads: int | None = None,
                 out_dir: Path | None = None, calibration: Path | None = None) -> Conversion:
    """Convert, check and install ``pack``'s file below ``out_dir`` (default: the converted-model folder).

    ``calibration``: the aligned crops (.npy) a quantising pack (``[file.source] calibration``) needs.
    """
    if pack.source.type != CONVERTED or pack.check is None:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{pack.label} is not a converted pack")
    if pack.source.calibration and calibration is None:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{pack.label} needs calibration crops of "
                                                     f"{pack.source.calibration} (made by 'appliance models convert')")
    inputs = input_files(registry, pack)
    check_pins(pack, python)
    script = converter_script(pack)
    target = (out_dir or paths.converted_models_dir()) / pack.source.relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        command = [str(python), "-I", str(script), "--inputs", *map(str, inputs), "--out", str(tmp)]
        if threads is not None:
            command += ["--threads", str(threads)]
        if pack.source.calibration:
            command += ["--calibration", str(calibration)]
        report = _report(_run(command, CONVERT_TIMEOUT_S, f"{pack.label}: converter"), pack)
        result = numeric_check.run_check(pack.check, tmp)
        if not result.passed:
            raise ApplianceError(ErrorCode.PACK_CHECKSUM, f"{pack.label}: the conversion fails the numerical "
                                                          f"check: {result.detail}; {result.summary(pack.check)}")
        digest = sha256_file(tmp)
        tmp.chmod(SHARED)  # the service account reads it; mkstemp gives 0600
        replace_durably(tmp, target)  # same folder: one rename, after the bytes are synced
    finally:
        tmp.unlink(missing_ok=True)
    provenance = target.with_name(target.name + PROVENANCE_SUFFIX)
    _write_json_durably(provenance, {
        "pack": pack.label,
        "converter": pack.source.converter,
        "converter_requires": list(pack.source.converter_requires),
        "converter_versions": report.get("versions", {}),
        "converter_python": str(python),
        "threads": report.get("threads"),
        "inputs": [{"relpath": rel, "sha256": sha} for rel, sha in zip(pack.source.inputs, pack.source.input_sha256)],
        "calibration": ({"images": pack.source.calibration, "split": pack.source.calibration_split,
                         "crops": report.get("calibration_crops"), "sha256": sha256_file(calibration)}
                        if pack.source.calibration and calibration is not None else None),
        "output_sha256": digest,  # this machine's bytes, for the record only
        "check": {"max_abs_error": result.max_abs_error, "atol": pack.check.atol, "rtol": pack.check.rtol,
                  "min_cosine": result.min_cosine, "min_cosine_bound": pack.check.min_cosine,
                  "generator": pack.check.generator, "seed": pack.check.seed, "samples": pack.check.samples},
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return Conversion(target, provenance, digest, int(report.get("threads") or 0), result)


def _write_json_durably(path: Path, data: dict) -> None:
    write_durably(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"), SHARED)
