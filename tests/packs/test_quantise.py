"""The int8 embedder pack (w600k-mbf-int8): made by the quantising converter, verified by cosine."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomlkit

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs import PackRegistry
from appliance.packs.convert import CONVERT_VENV, convert_pack, converter_script, input_files
from appliance.packs.manifest import load_manifest

INT8 = "w600k-mbf-int8"
FLOAT = "w600k-mbf"
CONVERT_PYTHON = paths.cache_dir() / CONVERT_VENV / "bin" / "python"
UNREACHABLE_COSINE = 0.9999  # above what any int8 copy reaches (measured minimum 0.9725-0.976)
FLOAT_COSINE = 0.9999  # the float model against its own recorded outputs
SEVEN_BIT_PEAK = 64  # the weights' largest magnitude with ONNX Runtime's reduce_range


def registry() -> PackRegistry:
    return PackRegistry(paths.model_search_path())


def _int8_file() -> Path:
    reg = registry()
    return reg.model_file(reg.get(INT8))


def _manifest_text() -> str:
    return (registry().get(INT8).directory / "manifest.toml").read_text()


def _pack_folder(tmp_path: Path, text: str, model_bytes: bytes | None = None) -> PackRegistry:
    folder = tmp_path / "pack"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.toml").write_text(text)
    if model_bytes is not None:
        (folder / tomlkit.parse(text)["file"]["name"]).write_bytes(model_bytes)
    return PackRegistry([tmp_path])


def _edited(edit) -> str:
    document = tomlkit.parse(_manifest_text())
    edit(document)
    return tomlkit.dumps(document)


def test_int8_manifest_declares_calibration_cosine_bound_and_licence():
    pack = registry().get(INT8)
    assert pack.source.type == "converted" and pack.source.converter == "appliance.packs.converters.quantise"
    assert pack.source.calibration == "data/faces/celeba-dev" and pack.source.calibration_split == "a"
    assert pack.check is not None and 0 < pack.check.min_cosine < 1
    assert pack.input["mean"] == 0 and pack.input["std"] == 1  # normalisation is inside the graph
    assert not pack.commercial_use and pack.licence_chain.verdict == "no"
    assert pack.providers[-1] == "CPUExecutionProvider" and not pack.providers_required


def test_int8_file_passes_its_numerical_check():
    reg = registry()
    pack = reg.get(INT8)
    result = reg.check_result(reg.model_file(pack))
    assert result is not None and result.passed
    assert pack.check.min_cosine <= result.min_cosine < 1.0  # lossy, yet within the bound


def test_corrupted_int8_file_fails_with_checksum_code(tmp_path: Path):
    data = _int8_file().read_bytes()
    reg = _pack_folder(tmp_path, _manifest_text(), data[: len(data) // 2])
    with pytest.raises(ApplianceError) as error:
        reg.model_file(reg.get(INT8))
    assert error.value.code is ErrorCode.PACK_CHECKSUM and "not a loadable ONNX model" in str(error.value)


def test_too_tight_cosine_bound_fails_the_check(tmp_path: Path):
    text = _edited(lambda d: d["check"].update(min_cosine=UNREACHABLE_COSINE))
    reg = _pack_folder(tmp_path, text, _int8_file().read_bytes())
    with pytest.raises(ApplianceError) as error:
        reg.model_file(reg.get(INT8))
    assert error.value.code is ErrorCode.PACK_CHECKSUM
    assert "min cosine" in str(error.value) and f"cosine >= {UNREACHABLE_COSINE:g}" in str(error.value)


def test_wrong_model_fails_the_check(tmp_path: Path):
    """The float file has another input name and scale: refused, never silently accepted."""
    reg = registry()
    float_bytes = reg.model_file(reg.get(FLOAT)).read_bytes()
    reg = _pack_folder(tmp_path, _manifest_text(), float_bytes)
    with pytest.raises(ApplianceError) as error:
        reg.model_file(reg.get(INT8))
    assert error.value.code is ErrorCode.PACK_CHECKSUM and "model inputs" in str(error.value)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["check"].update(min_cosine=1.5), "min_cosine must be in [-1, 1]"),
    (lambda d: d["file"]["source"].update(calibration_split="c"), "calibration_split must be a or b"),
])
def test_bad_quantisation_manifest_is_refused(tmp_path: Path, edit, message: str):
    path = tmp_path / "manifest.toml"
    path.write_text(_edited(edit))
    with pytest.raises(ApplianceError) as error:
        load_manifest(path)
    assert error.value.code is ErrorCode.PACK_INVALID and message in str(error.value)


def test_convert_refuses_a_quantising_pack_without_calibration_crops(tmp_path: Path):
    reg = registry()
    with pytest.raises(ApplianceError) as error:
        convert_pack(reg, reg.get(INT8), Path(sys.executable), out_dir=tmp_path)
    assert error.value.code is ErrorCode.PACK_INVALID and "calibration crops" in str(error.value)


def test_reference_mode_reproduces_the_float_outputs():
    """The expected outputs are the FLOAT model's, so the bound measures the quantisation."""
    if not CONVERT_PYTHON.is_file():
        pytest.fail(f"{CONVERT_PYTHON} absent: scripts/bootstrap.sh creates the converter venv")
    reg = registry()
    pack = reg.get(INT8)
    command = [str(CONVERT_PYTHON), "-I", str(converter_script(pack)), "--inputs",
               *map(str, input_files(reg, pack)), "--reference", json.dumps(pack.check.spec())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)
    assert outputs["reference_sha256"] == pack.check.reference_sha256
    got, want = np.array(outputs["embedding"]), np.array(pack.check.expected["embedding"])
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= FLOAT_COSINE


def test_set_up_int8_file_was_calibrated_on_split_a_with_7_bit_weights():
    """The file the set-up made (scripts/bootstrap.sh ran ``models convert``): real crops of
    split a, the check's cosine, the pinned converter. A fresh conversion end to end is the
    installed wheel's test (tests/ops/test_install_wheel.py), from the package as it ships."""
    if not CONVERT_PYTHON.is_file():
        pytest.fail(f"{CONVERT_PYTHON} absent: scripts/bootstrap.sh creates the converter venv")
    pack = registry().get(INT8)
    made = _int8_file()
    provenance = json.loads(made.with_name(made.name + ".provenance.json").read_text())
    assert provenance["calibration"]["split"] == "a" and provenance["calibration"]["crops"] > 0
    assert provenance["check"]["min_cosine"] >= pack.check.min_cosine
    assert provenance["converter_versions"]["onnxruntime"] == "1.32.0"
    # 7-bit weights: two products of a uint8 activation and a weight of magnitude <= 64 sum to at
    # most 2 x 255 x 64 = 32,640, inside the 16 bits AVX2's pmaddubsw saturates at
    inspect = ("import sys, onnx\nfrom onnx import numpy_helper\n"
               "weights = [numpy_helper.to_array(t) for t in onnx.load(sys.argv[1]).graph.initializer"
               " if t.data_type == onnx.TensorProto.INT8]\n"
               "print(len(weights), min(int(w.min()) for w in weights), max(int(w.max()) for w in weights))")
    read = subprocess.run([str(CONVERT_PYTHON), "-I", "-c", inspect, str(made)], capture_output=True, text=True,
                          timeout=120)
    count, low, high = map(int, read.stdout.split())
    assert count > 0 and -SEVEN_BIT_PEAK <= low and high <= SEVEN_BIT_PEAK, read.stdout + read.stderr
