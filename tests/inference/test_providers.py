"""Execution-provider choice from the pack manifest: pure selection, manifest rules, a real session."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tomlkit

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode
from appliance.inference.embedder import create_embedder
from appliance.inference.providers import CPU_PROVIDER, choose_providers, create_session, pack_providers
from appliance.packs import PackRegistry
from appliance.packs.manifest import load_manifest

TRT, CUDA, OPENVINO = "TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider"
JETSON = [TRT, CUDA, CPU_PROVIDER]  # what onnxruntime-gpu offers on a Jetson with TensorRT
CUDA_ONLY_BUILD = [CUDA, CPU_PROVIDER]
CPU_BUILD = [CPU_PROVIDER]
INT8 = "w600k-mbf-int8"
CROP_SIZE = 112


def registry() -> PackRegistry:
    return PackRegistry(paths.model_search_path())


@pytest.mark.parametrize("preferred, available, chosen", [
    (JETSON, JETSON, [TRT, CPU_PROVIDER]),  # the accelerator, the CPU for operators it lacks
    (JETSON, CUDA_ONLY_BUILD, [CUDA, CPU_PROVIDER]),
    (JETSON, CPU_BUILD, [CPU_PROVIDER]),  # a Raspberry Pi
    ([CUDA, TRT], JETSON, [CUDA, CPU_PROVIDER]),  # the manifest's order, not the build's
    ([], JETSON, [CPU_PROVIDER]),  # no preference: the CPU, as before
    ([TRT], CPU_BUILD, [CPU_PROVIDER]),  # not required: falls back
])
def test_first_offered_provider_is_chosen(preferred, available, chosen):
    assert choose_providers(preferred, available) == chosen


def test_required_provider_missing_is_a_clear_error():
    with pytest.raises(ApplianceError) as error:
        choose_providers([TRT, CUDA], CPU_BUILD, required=True, label="pack@1")
    assert error.value.code is ErrorCode.DEPENDENCY_MISSING
    assert "pack@1 requires one of TensorrtExecutionProvider, CUDAExecutionProvider" in str(error.value)
    assert "offers CPUExecutionProvider" in str(error.value)
    assert choose_providers([TRT, CUDA], CUDA_ONLY_BUILD, required=True) == [CUDA, CPU_PROVIDER]


def _manifest(tmp_path: Path, edit) -> Path:
    source = registry().get(INT8).directory / "manifest.toml"
    document = tomlkit.parse(source.read_text())
    edit(document)
    path = tmp_path / "manifest.toml"
    path.write_text(tomlkit.dumps(document))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["pack"].update(providers=["cuda"]), "list of ONNX Runtime provider names"),
    (lambda d: d["pack"].update(providers="CUDAExecutionProvider"), "list of ONNX Runtime provider names"),
    (lambda d: d["pack"].update(runtime="dlib"), "providers are for onnxruntime packs"),
    (lambda d: (d["pack"].update(providers_required=True), d["pack"].pop("providers")),
     "providers_required = true needs a providers list"),
])
def test_bad_provider_manifest_is_refused(tmp_path: Path, edit, message: str):
    with pytest.raises(ApplianceError) as error:
        load_manifest(_manifest(tmp_path, edit))
    assert error.value.code is ErrorCode.PACK_INVALID and message in str(error.value)


def test_manifest_preference_meets_this_build():
    pack = registry().get(INT8)
    assert pack.providers == (TRT, CUDA, CPU_PROVIDER)
    assert pack_providers(pack, JETSON) == [TRT, CPU_PROVIDER]
    assert pack_providers(pack, CPU_BUILD) == [CPU_PROVIDER]
    required = dataclasses.replace(pack, providers=(TRT,), providers_required=True)
    with pytest.raises(ApplianceError) as error:
        pack_providers(required, CPU_BUILD)
    assert error.value.code is ErrorCode.DEPENDENCY_MISSING


def test_cpu_session_is_created_with_the_chosen_provider_and_logged(caplog):
    reg = registry()
    pack = reg.get(INT8)
    offered = ort.get_available_providers()
    expected = pack_providers(pack, offered)[0]  # the CPU on this machine (no GPU build installed)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    with caplog.at_level(logging.INFO, logger="appliance.inference.providers"):
        session = create_session(reg.model_file(pack), options, pack)
    assert session.get_providers()[0] == expected
    assert f"{pack.label} runs on {expected}" in caplog.text


def test_required_missing_provider_refuses_the_embedder():
    reg = registry()
    pack = reg.get(INT8)
    # a provider this onnxruntime build lacks (on a Jetson TensorRT and CUDA are there; OpenVINO is not)
    missing = next(name for name in (TRT, CUDA, OPENVINO) if name not in ort.get_available_providers())
    required = dataclasses.replace(pack, providers=(missing,), providers_required=True)
    with pytest.raises(ApplianceError) as error:
        create_embedder(required, reg.model_file(pack), threads=1)
    assert error.value.code is ErrorCode.DEPENDENCY_MISSING


def test_int8_embedder_runs_through_the_chosen_session():
    reg = registry()
    pack = reg.get(INT8)
    embedder = create_embedder(pack, reg.model_file(pack), threads=1)
    crop = np.random.default_rng(0).integers(0, 256, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    templates, norms = embedder.embed_crops([crop])
    assert templates.shape == (1, pack.embedding_size) and np.isclose(np.linalg.norm(templates[0]), 1, atol=1e-5)
    assert norms[0] > 0
