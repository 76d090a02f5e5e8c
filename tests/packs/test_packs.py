"""Model packs: manifests, checksums, numerical checks of converted files, licences, and
templates that refuse to mix packs."""
from __future__ import annotations

import ast
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomlkit

from appliance import paths
from appliance.digests import sha256_file
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs import PackRegistry, numeric_check
from appliance.packs.convert import CONVERT_VENV, check_pins, convert_pack, converter_script, input_files, pin_satisfied
from appliance.packs.converters import reference_inputs
from appliance.packs.manifest import parse_pin
from appliance.vision.templates import Template, similarity


def registry() -> PackRegistry:
    return PackRegistry(paths.model_search_path())


def test_every_pack_records_licence_and_commercial_flag():
    packs = registry().packs()
    assert {"mediapipe-face-landmarker", "w600k-mbf", "dlib-resnet-v1", "yunet-2026may"} <= set(packs)
    for pack in packs.values():
        assert pack.licence and isinstance(pack.commercial_use, bool)
    # a non-commercial embedder is never the only choice
    embedders = [p for p in packs.values() if p.kind == "embedding"]
    assert any(p.commercial_use for p in embedders)
    assert not packs["w600k-mbf"].commercial_use


def test_installed_model_files_verify():
    reg = registry()
    for pack in reg.packs().values():
        assert reg.model_file(pack).is_file()


def test_checksum_mismatch_is_refused(tmp_path: Path):
    source = registry().get("w600k-mbf")
    folder = tmp_path / "w600k-mbf"
    folder.mkdir()
    shutil.copy(source.directory / "manifest.toml", folder / "manifest.toml")
    (folder / source.file_name).write_bytes(b"not the model")
    reg = PackRegistry([tmp_path])
    with pytest.raises(ApplianceError) as error:
        reg.model_file(reg.get("w600k-mbf"))
    assert error.value.code is ErrorCode.PACK_CHECKSUM


def test_missing_file_and_unknown_pack_errors(tmp_path: Path):
    source = registry().get("w600k-mbf")
    folder = tmp_path / "w600k-mbf"
    folder.mkdir()
    shutil.copy(source.directory / "manifest.toml", folder / "manifest.toml")
    reg = PackRegistry([tmp_path])
    with pytest.raises(ApplianceError) as missing:
        reg.model_file(reg.get("w600k-mbf"))
    assert missing.value.code is ErrorCode.PACK_FILE_MISSING
    assert "appliance models install" in str(missing.value)
    with pytest.raises(ApplianceError) as unknown:
        reg.get("no-such-pack")
    assert unknown.value.code is ErrorCode.PACK_NOT_FOUND


def test_invalid_manifest_is_reported(tmp_path: Path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "manifest.toml").write_text("[pack]\nid = 'broken'\n")
    with pytest.raises(ApplianceError) as error:
        PackRegistry([tmp_path]).packs()
    assert error.value.code is ErrorCode.PACK_INVALID


def test_templates_of_different_packs_are_not_compared():
    vector = np.ones(4, dtype=np.float32) / 2
    a = Template(vector, "w600k-mbf", "1.0.0")
    b = Template(vector, "dlib-resnet-v1", "1.0.0")
    assert similarity(a, Template(vector, "w600k-mbf", "1.0.0")) == pytest.approx(1.0)
    with pytest.raises(ApplianceError) as error:
        similarity(a, b)
    assert error.value.code is ErrorCode.PACK_MISMATCH
    with pytest.raises(ApplianceError):
        similarity(a, Template(vector, "w600k-mbf", "2.0.0"))


# -- converted packs: verified by inputs, pinned converter and a numerical check -------------
MINIFASNET = "minifasnet-silentface"
CONVERT_PYTHON = paths.cache_dir() / CONVERT_VENV / "bin" / "python"
NO_CONVERT_VENV = f"{CONVERT_PYTHON} absent: scripts/bootstrap.sh creates the converter venv"


@pytest.fixture
def convert_python() -> Path:
    """The converter venv scripts/bootstrap.sh makes (and scripts/test.sh runs first): its
    absence is a set-up defect, so these tests fail rather than skip."""
    if not CONVERT_PYTHON.is_file():
        pytest.fail(NO_CONVERT_VENV)
    return CONVERT_PYTHON
LIVE_CLASS = 1
UNSATURATED = (0.05, 0.95)
MIN_REFERENCE_SAMPLES = 4
WEIGHT_PERTURBATION = 0.1  # added to one final-layer weight: moves an output by ~4e-3 (measured)
PROB_WEIGHT_DIMS = [128, 3]  # MiniFASNet's last MatMul (embedding x classes), as exported
FLOAT32_BYTES = 4
CONVERTER_DEPENDENCIES = {"torch", "onnx"}


def _minifasnet_manifest_text() -> str:
    return (registry().get(MINIFASNET).directory / "manifest.toml").read_text()


def _pack_folder(tmp_path: Path, manifest_text: str, model_bytes: bytes | None = None) -> PackRegistry:
    """A one-pack registry in ``tmp_path``; the model file (if given) sits beside the manifest."""
    folder = tmp_path / "pack"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.toml").write_text(manifest_text)
    if model_bytes is not None:
        name = tomlkit.parse(manifest_text)["file"]["name"]
        (folder / name).write_bytes(model_bytes)
    return PackRegistry([tmp_path])


def _edited(text: str, edit) -> str:
    document = tomlkit.parse(text)
    edit(document)
    return tomlkit.dumps(document)


def _real_converted_file() -> Path:
    reg = registry()
    return reg.model_file(reg.get(MINIFASNET))


def test_converted_manifest_schema():
    pack = registry().get(MINIFASNET)
    assert pack.source.type == "converted" and pack.sha256 == ""
    assert pack.source.converter == "appliance.packs.converters.minifasnet"
    assert {parse_pin(p)[0] for p in pack.source.converter_requires} == CONVERTER_DEPENDENCIES
    assert len(pack.source.inputs) == len(pack.source.input_sha256) == 2
    check = pack.check
    assert check is not None and check.samples >= MIN_REFERENCE_SAMPLES
    assert set(check.inputs) == {"crop_v2", "crop_v1se"} and check.inputs["crop_v2"] == (3, 80, 80)
    expected = np.asarray(check.expected["softmax"])
    assert expected.shape == (check.samples, 2, 3)
    np.testing.assert_allclose(expected.sum(axis=-1), 1.0, atol=1e-5)  # softmaxes
    live = expected[..., LIVE_CLASS]
    assert UNSATURATED[0] < live.min() and live.max() < UNSATURATED[1]  # a check that can notice
    assert check.atol > 0 and check.rtol >= 0


@pytest.mark.parametrize("case, edit, message", [
    ("output sha256", lambda d: d["file"].add("sha256", "0" * 64), "not by [file].sha256"),
    ("no check", lambda d: d.remove("check"), "missing key 'check'"),
    ("loose pin", lambda d: d["file"]["source"].update(converter_requires=["torch>=2"]), "exact pin"),
    ("foreign converter", lambda d: d["file"]["source"].update(converter="os.system"), "not a module of"),
    ("no tolerance", lambda d: d["check"].remove("atol"), "missing key 'atol'"),
    ("sample count", lambda d: d["check"].update(samples=3), "samples"),
    ("input sha256 count", lambda d: d["file"]["source"]["input_sha256"].pop(), "one sha256 per input"),
])
def test_converted_manifest_rules(tmp_path: Path, case: str, edit, message: str):
    reg = _pack_folder(tmp_path, _edited(_minifasnet_manifest_text(), edit))
    with pytest.raises(ApplianceError) as error:
        reg.packs()
    assert error.value.code is ErrorCode.PACK_INVALID and message in str(error.value), case


def test_sha256_stays_mandatory_for_registry_files(tmp_path: Path):
    text = (registry().get("w600k-mbf").directory / "manifest.toml").read_text()
    for edit, message in ((lambda d: d["file"].remove("sha256"), "missing key 'sha256'"),
                          (lambda d: d.add("check", {"seed": 1}), "[check] is for converted packs")):
        with pytest.raises(ApplianceError) as error:
            _pack_folder(tmp_path, _edited(text, edit)).packs()
        assert error.value.code is ErrorCode.PACK_INVALID and message in str(error.value)


def test_reference_inputs_are_reproducible():
    check = registry().get(MINIFASNET).check
    first = reference_inputs.generate(check.generator, check.seed, check.samples, check.inputs)
    again = reference_inputs.generate(check.generator, check.seed, check.samples, dict(reversed(check.inputs.items())))
    assert reference_inputs.digest(first) == reference_inputs.digest(again) == check.reference_sha256
    for name, (shape, values) in first.items():
        pixels = np.frombuffer(values, dtype=np.float32)
        assert shape == (check.samples, *check.inputs[name])
        assert pixels.min() >= 0 and pixels.max() <= 255 and np.array_equal(pixels, np.round(pixels))
        assert len(np.unique(pixels)) > 128  # structured images, not flat fields
    other = reference_inputs.generate(check.generator, check.seed + 1, check.samples, check.inputs)
    assert reference_inputs.digest(other) != check.reference_sha256
    with pytest.raises(ValueError):
        reference_inputs.generate("no-such-generator", 1, 1, check.inputs)


def test_converted_file_passes_numerical_check():
    reg = registry()
    pack = reg.get(MINIFASNET)
    path = reg.model_file(pack)
    result = reg.check_result(path)
    assert result is not None and result.passed
    assert 0 <= result.max_abs_error <= pack.check.atol


def _protobuf_fields(buf: bytes, start: int, end: int):
    """(field number, wire type, start, end) of each protobuf field in ``buf[start:end]``
    (varints: the value in ``start``): enough wire format to find an ONNX weight without onnx."""
    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, pos

    fixed = {1: 8, 5: 4}
    pos = start
    while pos < end:
        key, pos = varint(pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(pos)
            yield number, wire, value, pos
        elif wire == 2:
            length, pos = varint(pos)
            yield number, wire, pos, pos + length
            pos += length
        else:
            yield number, wire, pos, pos + fixed[wire]
            pos += fixed[wire]


def _perturb_weight(model: bytes, dims: list[int], delta: float) -> bytes:
    """``model`` with ``delta`` added to the first value of the first float initializer of
    shape ``dims`` (ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto: dims = 1,
    raw_data = 9); same length, so every other byte stays as it was."""

    buf = bytearray(model)
    for number, wire, start, end in _protobuf_fields(buf, 0, len(buf)):
        if (number, wire) != (7, 2):
            continue
        for g_number, g_wire, g_start, g_end in _protobuf_fields(buf, start, end):
            if (g_number, g_wire) != (5, 2):
                continue
            fields = list(_protobuf_fields(buf, g_start, g_end))
            shape = [value for n, w, value, _ in fields if (n, w) == (1, 0)]
            raw = [(s, e) for n, w, s, e in fields if (n, w) == (9, 2)]
            if shape == dims and raw and raw[0][1] - raw[0][0] >= FLOAT32_BYTES:
                (value,) = struct.unpack_from("<f", buf, raw[0][0])
                struct.pack_into("<f", buf, raw[0][0], value + delta)
                return bytes(buf)
    raise AssertionError(f"no initializer of shape {dims} in the model")


def test_perturbed_weight_fails_numerical_check(tmp_path: Path):
    original = _real_converted_file().read_bytes()
    perturbed = _perturb_weight(original, PROB_WEIGHT_DIMS, WEIGHT_PERTURBATION)
    assert perturbed != original and len(perturbed) == len(original)
    reg = _pack_folder(tmp_path, _minifasnet_manifest_text(), perturbed)
    with pytest.raises(ApplianceError) as error:
        reg.model_file(reg.get(MINIFASNET))
    assert error.value.code is ErrorCode.PACK_CHECKSUM
    assert "numerical check failed" in str(error.value) and "max abs error" in str(error.value)
    # the same untouched copy is accepted: the failure is the weight, not the place
    reg = _pack_folder(tmp_path, _minifasnet_manifest_text(), original)
    assert reg.model_file(reg.get(MINIFASNET)).is_file()


@pytest.mark.parametrize("multiple, accepted", [(0.5, True), (10.0, False)])
def test_tolerance_bounds_the_check(tmp_path: Path, multiple: float, accepted: bool):
    pack = registry().get(MINIFASNET)
    shift = multiple * pack.check.atol

    def nudge(document) -> None:
        document["check"]["expected"]["softmax"][0][0][LIVE_CLASS] += shift

    reg = _pack_folder(tmp_path, _edited(_minifasnet_manifest_text(), nudge), _real_converted_file().read_bytes())
    if accepted:
        path = reg.model_file(reg.get(MINIFASNET))
        assert reg.check_result(path).max_abs_error >= shift * 0.9
    else:
        with pytest.raises(ApplianceError) as error:
            reg.model_file(reg.get(MINIFASNET))
        assert error.value.code is ErrorCode.PACK_CHECKSUM


def test_reference_generator_drift_is_named(tmp_path: Path):
    text = _edited(_minifasnet_manifest_text(), lambda d: d["check"].update(seed=d["check"]["seed"] + 1))
    reg = _pack_folder(tmp_path, text, _real_converted_file().read_bytes())
    with pytest.raises(ApplianceError) as error:
        reg.model_file(reg.get(MINIFASNET))
    assert error.value.code is ErrorCode.PACK_CHECKSUM and "generator changed" in str(error.value)


def test_convert_refuses_missing_or_changed_inputs(tmp_path: Path):
    reg = _pack_folder(tmp_path, _minifasnet_manifest_text())
    pack = reg.get(MINIFASNET)
    with pytest.raises(ApplianceError) as missing:
        convert_pack(reg, pack, Path(sys.executable), out_dir=tmp_path / "out")
    assert missing.value.code is ErrorCode.FILE_NOT_FOUND and missing.value.code.exit_status == 3
    for relpath in pack.source.inputs:
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_bytes(b"not the weights")
    with pytest.raises(ApplianceError) as changed:
        convert_pack(reg, pack, Path(sys.executable), out_dir=tmp_path / "out")
    assert changed.value.code is ErrorCode.PACK_CHECKSUM and changed.value.code.exit_status == 7
    assert not (tmp_path / "out").exists()


def test_converter_pins_are_enforced():
    assert pin_satisfied("2.13.0", "2.13.0+cpu") and pin_satisfied("2.13.0+cpu", "2.13.0+cpu")
    assert not pin_satisfied("2.13.0", "2.13.1") and not pin_satisfied("2.13.0+cpu", "2.13.0+cu121")
    assert not pin_satisfied("1.0", None)
    # the main venv is no converter venv: it has no torch
    with pytest.raises(ApplianceError) as error:
        check_pins(registry().get(MINIFASNET), Path(sys.executable))
    assert error.value.code is ErrorCode.PACK_INVALID and "torch missing" in str(error.value)


def test_converters_import_only_stdlib_and_their_pins():
    """The converter runs in a venv with torch and onnx only: no numpy, no appliance modules."""
    folder = paths.REPO_ROOT / "appliance" / "packs" / "converters"
    siblings = {path.stem for path in folder.glob("*.py")}
    # each converter may also import its own manifest's pins (quantise: onnx, onnxruntime, numpy)
    pins = {pack.source.converter.rsplit(".", 1)[1]: {parse_pin(p)[0] for p in pack.source.converter_requires}
            for pack in registry().packs().values() if pack.source.type == "converted"}
    for module in folder.glob("*.py"):
        allowed = (set(sys.stdlib_module_names) | CONVERTER_DEPENDENCIES | siblings | {"__future__"}
                   | pins.get(module.stem, set()))
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            assert {name.split(".")[0] for name in names} <= allowed, f"{module.name}: {names}"


def test_reference_mode_reproduces_the_recorded_outputs(convert_python):
    """The manifest's expected outputs are the PyTorch model's (not an export's)."""
    reg = registry()
    pack = reg.get(MINIFASNET)
    command = [str(convert_python), "-I", str(converter_script(pack)), "--inputs",
               *map(str, input_files(reg, pack)), "--reference", json.dumps(pack.check.spec())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)
    assert outputs["reference_sha256"] == pack.check.reference_sha256
    np.testing.assert_allclose(outputs["softmax"], pack.check.expected["softmax"], rtol=0, atol=pack.check.atol)


def test_second_export_with_one_thread_verifies(convert_python, tmp_path: Path):
    command = [sys.executable, "-m", "appliance", "models", "convert", "--pack", MINIFASNET, "--threads", "1",
               "--python", str(convert_python), "--out-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    pack = registry().get(MINIFASNET)
    model = tmp_path / pack.source.relpath
    assert sorted(p.name for p in model.parent.iterdir()) == [model.name, model.name + ".provenance.json"]
    result = numeric_check.verify(pack, model)
    assert result.max_abs_error <= pack.check.atol
    provenance = json.loads((model.parent / (model.name + ".provenance.json")).read_text())
    assert provenance["threads"] == 1
    assert provenance["converter_versions"]["torch"].startswith("2.13.0")
    assert provenance["output_sha256"] == sha256_file(model)
    assert [i["sha256"] for i in provenance["inputs"]] == list(pack.source.input_sha256)
    assert provenance["check"]["max_abs_error"] == pytest.approx(result.max_abs_error)


def test_models_cli_verify_and_convert_errors():
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "appliance", "models", *args], capture_output=True,
                              text=True, timeout=300)

    verify = run("verify", "--pack", MINIFASNET)
    assert verify.returncode == 0, verify.stderr
    assert "max abs error" in verify.stdout and "tolerance atol" in verify.stdout
    assert len(verify.stdout.strip().splitlines()) == 1  # --pack: that pack only
    not_converted = run("convert", "--pack", "w600k-mbf")
    assert not_converted.returncode == ErrorCode.PACK_INVALID.exit_status
    assert [line for line in not_converted.stderr.splitlines() if line.startswith("error:")]
    unknown = run("list", "--pack", "no-such-pack")
    assert unknown.returncode == ErrorCode.PACK_NOT_FOUND.exit_status
