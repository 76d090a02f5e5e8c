"""The TF.js-graph converter, the npm-tarball source and the two Human liveness packs."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import tarfile
import threading
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
import tomlkit

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs import PackRegistry, archive
from appliance.packs.convert import CONVERT_VENV, converter_script, input_files
from appliance.packs.install import install_inputs
from appliance.packs.numeric_check import run_check

PACKS = ("human-antispoof", "human-liveness")
CONVERT_PYTHON = paths.cache_dir() / CONVERT_VENV / "bin" / "python"
PIXEL_SCALE = 255.0
EXACT = 1e-5  # float32 ONNX Runtime against a float64 numpy reference of a tiny graph
LIVENESS_OUTPUT_WEIGHT = "StatefulPartitionedCall/sequential_1/dense_2/MatMul/ReadVariableOp"
WEIGHT_PERTURBATION = 0.01  # added to one of the 128 output-layer weights of human-liveness


@pytest.fixture
def convert_python() -> Path:
    """The converter venv of scripts/bootstrap.sh: its absence is a set-up defect, not a skip."""
    if not CONVERT_PYTHON.is_file():
        pytest.fail(f"{CONVERT_PYTHON} absent: scripts/bootstrap.sh creates the converter venv")
    return CONVERT_PYTHON


def registry() -> PackRegistry:
    return PackRegistry(paths.model_search_path())


def _manifest_text(pack_id: str) -> str:
    return (registry().get(pack_id).directory / "manifest.toml").read_text()


def _edited(text: str, edit) -> str:
    document = tomlkit.parse(text)
    edit(document)
    return tomlkit.dumps(document)


def _pack_registry(tmp_path: Path, text: str) -> PackRegistry:
    folder = tmp_path / "pack"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.toml").write_text(text)
    return PackRegistry([tmp_path])


# -- manifests ------------------------------------------------------------------------------

@pytest.mark.parametrize("pack_id", PACKS)
def test_human_packs_are_converted_from_the_pinned_npm_tarball_and_not_commercial(pack_id: str):
    pack = registry().get(pack_id)
    source = pack.source
    assert source.type == "converted" and source.converter == "appliance.packs.converters.tfjs_graph"
    assert source.archive.type == "npm" and source.archive.url.startswith(archive.NPM_REGISTRY)
    assert archive.INTEGRITY.match(source.archive.integrity)
    assert len(source.archive.members) == len(source.inputs) == len(source.input_sha256)
    assert not pack.commercial_use and pack.licence_chain.verdict in ("no", "unclear")
    assert pack.check is not None and list(pack.check.inputs) == ["image"]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["file"]["source"]["archive"].update(url="https://example.com/x.tgz"), "url must be on"),
    (lambda d: d["file"]["source"]["archive"].update(integrity="sha256-abc"), "integrity must be"),
    (lambda d: d["file"]["source"]["archive"].update(members=["package/models/liveness.json"]), "one tarball member"),
    (lambda d: d["file"]["source"]["archive"].update(type="pypi"), "type 'pypi' unknown"),
    (lambda d: d["file"]["source"].update(type="search-path"), "holds the inputs of a converted pack"),
])
def test_archive_rules(tmp_path: Path, edit, message: str):
    reg = _pack_registry(tmp_path, _edited(_manifest_text("human-liveness"), edit))
    with pytest.raises(ApplianceError) as error:
        reg.packs()
    assert error.value.code is ErrorCode.PACK_INVALID and message in str(error.value)


# -- the npm tarball: download, integrity, cache, extraction ----------------------------------

def _tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.fixture
def http_folder(tmp_path: Path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path / 'www'``."""
    root = tmp_path / "www"
    root.mkdir()
    server = HTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_checks_integrity_before_keeping_the_file(http_folder, tmp_path: Path):
    root, base = http_folder
    data = _tarball({"package/models/m.json": b"{}"})
    (root / "m.tgz").write_bytes(data)
    target = tmp_path / "cache" / "m.tgz"
    assert archive.download(f"{base}/m.tgz", target, _integrity(data)).read_bytes() == data
    with pytest.raises(ApplianceError) as error:
        archive.download(f"{base}/m.tgz", tmp_path / "cache" / "other.tgz", _integrity(b"other bytes"))
    assert error.value.code is ErrorCode.PACK_CHECKSUM
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.tgz"]  # nothing half-written kept
    with pytest.raises(ApplianceError) as error:
        archive.download(f"{base}/missing.tgz", tmp_path / "cache" / "x.tgz", _integrity(data))
    assert error.value.code is ErrorCode.PACK_FILE_MISSING


def test_install_inputs_extracts_members_from_a_cached_tarball(tmp_path: Path, monkeypatch):
    """A pre-filled cache installs offline; members land below the converted-model folder."""
    json_bytes, bin_bytes = b'{"format": "graph-model"}', b"\x00\x01\x02\x03"
    data = _tarball({"package/models/liveness.json": json_bytes, "package/models/liveness.bin": bin_bytes})
    relpaths = ["npmtest/liveness.json", "npmtest/liveness.bin"]

    def edit(document):
        source = document["file"]["source"]
        source["inputs"] = relpaths
        source["input_sha256"] = [hashlib.sha256(json_bytes).hexdigest(), hashlib.sha256(bin_bytes).hexdigest()]
        source["archive"]["integrity"] = _integrity(data)
        source["archive"]["package"] = "npm-test-pack"

    reg = _pack_registry(tmp_path, _edited(_manifest_text("human-liveness"), edit))
    pack = reg.get("human-liveness")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / pack.source.archive.file_name).write_bytes(data)  # never downloaded: the URL is not asked
    converted = tmp_path / "converted"
    monkeypatch.setenv("APPLIANCE_CONVERTED_MODELS", str(converted))
    reg.search_path.append(converted)
    assert install_inputs(reg, pack, cache).startswith("inputs installed")
    assert (converted / relpaths[1]).read_bytes() == bin_bytes
    assert install_inputs(reg, pack, cache) == "inputs present"
    (converted / relpaths[1]).write_bytes(b"changed")  # a wrong copy is replaced from the tarball
    assert install_inputs(reg, pack, cache).startswith("inputs installed")
    assert (converted / relpaths[1]).read_bytes() == bin_bytes


# -- the converter: op mapping checked against numpy on a tiny graph ---------------------------

def _attr_s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _tiny_graph(folder: Path, rng: np.random.Generator) -> tuple[list[Path], dict]:
    """A TF.js graph with every mapped op, float16 and uint8-quantised weights; returns its inputs
    and the dequantised weights (what TF.js would compute with)."""
    conv_w = rng.normal(0, 0.5, (3, 3, 3, 2)).astype(np.float16)
    conv_b = rng.normal(0, 0.1, 2).astype(np.float16)
    scale, shift = rng.normal(1, 0.2, 2).astype(np.float32), rng.normal(0, 0.1, 2).astype(np.float32)
    dense_q = rng.integers(0, 256, (8, 3)).astype(np.uint8)
    q_scale, q_min = 0.01, -1.2
    dense_b = rng.normal(0, 0.1, 3).astype(np.float32)
    flat = np.array([-1, 8], dtype=np.int32)
    specs = [
        ("w", conv_w, {"dtype": "float32", "quantization": {"dtype": "float16", "original_dtype": "float32"}}),
        ("b", conv_b, {"dtype": "float32", "quantization": {"dtype": "float16", "original_dtype": "float32"}}),
        ("scale", scale, {"dtype": "float32"}), ("shift", shift, {"dtype": "float32"}),
        ("flat", flat, {"dtype": "int32"}),
        ("dense", dense_q, {"dtype": "float32", "quantization": {"dtype": "uint8", "scale": q_scale,
                                                                 "min": q_min, "original_dtype": "float32"}}),
        ("dense_b", dense_b, {"dtype": "float32"}),
    ]
    one = {"list": {"i": ["1", "1", "1", "1"]}}
    pool = {"list": {"i": ["1", "2", "2", "1"]}}
    nodes = [{"name": name, "op": "Const", "attr": {}} for name, _, _ in specs] + [
        {"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [{"size": "-1"}, {"size": "4"},
                                                                              {"size": "4"}, {"size": "3"}]}}}},
        {"name": "conv", "op": "_FusedConv2D", "input": ["x", "w", "b"],
         "attr": {"padding": _attr_s("SAME"), "strides": one, "dilations": one, "data_format": _attr_s("NHWC"),
                  "fused_ops": {"list": {"s": [_attr_s("BiasAdd")["s"], _attr_s("Relu")["s"]]}}}},
        {"name": "bn_mul", "op": "Mul", "input": ["conv", "scale"]},
        {"name": "bn_add", "op": "AddV2", "input": ["bn_mul", "shift"]},
        {"name": "pool", "op": "MaxPool", "input": ["bn_add"],
         "attr": {"ksize": pool, "strides": pool, "padding": _attr_s("VALID"), "data_format": _attr_s("NHWC")}},
        {"name": "flatten", "op": "Reshape", "input": ["pool", "flat"]},
        {"name": "dense_op", "op": "_FusedMatMul", "input": ["flatten", "dense", "dense_b"],
         "attr": {"fused_ops": {"list": {"s": [_attr_s("BiasAdd")["s"]]}}}},
        {"name": "softmax", "op": "Softmax", "input": ["dense_op"]},
        {"name": "Identity", "op": "Identity", "input": ["softmax"]},
    ]
    model = {"format": "graph-model", "modelTopology": {"node": nodes},
             "signature": {"outputs": {"y": {"tensorShape": {"dim": [{"size": "-1"}, {"size": "3"}]}}}},
             "weightsManifest": [{"paths": ["tiny.bin"], "weights": [
                 {"name": name, "shape": list(values.shape), **meta} for name, values, meta in specs]}]}
    (folder / "tiny.json").write_text(json.dumps(model))
    (folder / "tiny.bin").write_bytes(b"".join(values.tobytes() for _, values, _ in specs))
    dense = dense_q.astype(np.float32) * np.float32(q_scale) + np.float32(q_min)
    weights = {"w": conv_w.astype(np.float32), "b": conv_b.astype(np.float32), "scale": scale, "shift": shift,
               "dense": dense, "dense_b": dense_b}
    return [folder / "tiny.json", folder / "tiny.bin"], weights


def _numpy_reference(x_nhwc: np.ndarray, w: dict) -> np.ndarray:
    """The tiny graph in NHWC, written out by hand: TF semantics (SAME pads 1 on each side here)."""
    x = x_nhwc.astype(np.float64) / PIXEL_SCALE
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros(x.shape[:3] + (2,))
    for i in range(4):
        for j in range(4):
            conv[:, i, j] = np.einsum("nhwc,hwco->no", padded[:, i:i + 3, j:j + 3], w["w"])
    y = np.maximum(conv + w["b"], 0) * w["scale"] + w["shift"]
    pooled = y.reshape(len(x), 2, 2, 2, 2, 2).max(axis=(2, 4))  # (n, 2, 2, c), 2x2 windows
    logits = pooled.reshape(len(x), 8) @ w["dense"] + w["dense_b"]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_converter_maps_every_op_like_tensorflow(tmp_path: Path, convert_python: Path):
    import onnxruntime as ort

    inputs, weights = _tiny_graph(tmp_path, np.random.default_rng(15))
    out = tmp_path / "tiny.onnx"
    script = converter_script(registry().get("human-liveness"))
    done = subprocess.run([str(convert_python), "-I", str(script), "--inputs", *map(str, inputs), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    x_nhwc = np.random.default_rng(16).integers(0, 256, (5, 4, 4, 3)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"image": np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))})[0]
    np.testing.assert_allclose(actual, _numpy_reference(x_nhwc, weights), atol=EXACT)


def test_converter_refuses_an_unmapped_op(tmp_path: Path, convert_python: Path):
    inputs, _ = _tiny_graph(tmp_path, np.random.default_rng(15))
    model = json.loads(inputs[0].read_text())
    next(n for n in model["modelTopology"]["node"] if n["name"] == "softmax")["op"] = "LogSoftmax"
    inputs[0].write_text(json.dumps(model))
    script = converter_script(registry().get("human-liveness"))
    done = subprocess.run([str(convert_python), "-I", str(script), "--inputs", *map(str, inputs),
                           "--out", str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "op LogSoftmax (softmax) is not mapped" in done.stderr


# -- the real packs -------------------------------------------------------------------------

@pytest.mark.parametrize("pack_id", PACKS)
def test_converted_human_pack_reproduces_tfjs_outputs(pack_id: str):
    reg = registry()
    pack = reg.get(pack_id)
    result = reg.check_result(reg.model_file(pack))
    assert result is not None and result.passed and result.max_abs_error <= pack.check.atol


def test_one_wrong_weight_fails_the_numerical_check(tmp_path: Path, convert_python: Path):
    """The tolerance is tight enough to see one output-layer weight moved by 0.01."""
    reg = registry()
    pack = reg.get("human-liveness")
    json_path, bin_path = input_files(reg, pack)
    model = json.loads(json_path.read_text())
    offset = 0
    for spec in model["weightsManifest"][0]["weights"]:
        if spec["name"] == LIVENESS_OUTPUT_WEIGHT:
            break
        offset += int(np.prod(spec["shape"])) * 4  # float32, unquantised in this model
    data = bytearray(bin_path.read_bytes())
    value = np.frombuffer(bytes(data[offset:offset + 4]), dtype="<f4")[0] + np.float32(WEIGHT_PERTURBATION)
    data[offset:offset + 4] = np.float32(value).tobytes()
    (tmp_path / json_path.name).write_text(json_path.read_text())
    (tmp_path / bin_path.name).write_bytes(bytes(data))
    out = tmp_path / "liveness.onnx"
    done = subprocess.run([str(convert_python), "-I", str(converter_script(pack)), "--inputs",
                           str(tmp_path / json_path.name), str(tmp_path / bin_path.name), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = run_check(pack.check, out)
    assert not result.passed and result.max_abs_error > pack.check.atol
