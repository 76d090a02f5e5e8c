"""The licence chain of a pack manifest: code, weights and training data, each with a verdict."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tomlkit

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs import PackRegistry
from appliance.packs.manifest import CHAIN_LINKS, MANIFEST_NAME, load_manifest

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"


def test_dlib_pack_records_its_chain_and_the_training_data_caveat():
    pack = PackRegistry(paths.model_search_path()).get("dlib-resnet-v1")
    chain = pack.licence_chain
    assert chain is not None and set(chain.links()) == set(CHAIN_LINKS)
    assert chain.weights.commercial == "yes" and "CC0" in chain.weights.licence
    # the weights' author allows any use, the training images' terms are not settled
    assert chain.training_data.commercial == "unclear" and chain.training_data.note
    assert chain.verdict == "unclear" and pack.commercial_use


def _copy_dlib(tmp_path: Path) -> tuple[Path, tomlkit.TOMLDocument]:
    folder = tmp_path / "dlib-resnet-v1"
    folder.mkdir()
    shutil.copy(REPO_MODELS / "dlib-resnet-v1" / MANIFEST_NAME, folder / MANIFEST_NAME)
    return folder / MANIFEST_NAME, tomlkit.parse((folder / MANIFEST_NAME).read_text())


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["licence_chain"]["training_data"].__setitem__("commercial", "no"), "forbids commercial use"),
    (lambda d: d["licence_chain"]["weights"].__setitem__("commercial", "maybe"), "commercial must be one of"),
    (lambda d: d["licence_chain"].pop("code"), "[licence_chain.code] missing"),
    (lambda d: d["licence_chain"]["code"].__setitem__("url", "x"), "unexpected keyword"),
])
def test_inconsistent_chain_is_refused(tmp_path: Path, edit, message: str):
    path, data = _copy_dlib(tmp_path)
    edit(data)
    path.write_text(tomlkit.dumps(data))
    with pytest.raises(ApplianceError) as caught:
        load_manifest(path)
    assert caught.value.code == ErrorCode.PACK_INVALID and message in str(caught.value)


def test_non_commercial_pack_may_record_a_forbidding_link(tmp_path: Path):
    path, data = _copy_dlib(tmp_path)
    data["pack"]["commercial_use"] = False
    data["licence_chain"]["training_data"]["commercial"] = "no"
    path.write_text(tomlkit.dumps(data))
    assert load_manifest(path).licence_chain.verdict == "no"


def test_manifest_without_chain_still_loads(tmp_path: Path):
    path, data = _copy_dlib(tmp_path)
    del data["licence_chain"]
    path.write_text(tomlkit.dumps(data))
    assert load_manifest(path).licence_chain is None
