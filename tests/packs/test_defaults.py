"""Licence-aware defaults: the pack a declared use gets, and the refusal every service and the
enrollment desk give a commercial site running a non-commercial pack (real manifests, real
start-up paths; no model is loaded before the refusal)."""
from __future__ import annotations

import dataclasses
import logging

import pytest

from appliance import paths
from appliance.cli.main import main
from appliance.config import Config, load_config
from appliance.config.site_tables import COMMERCIAL, RESEARCH, SITE_USES, UNDECLARED, SiteConfig
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs import defaults
from appliance.packs.registry import PackRegistry
from appliance.pipeline import FacePipeline

RESEARCH_PACK = "w600k-mbf"  # the most accurate pack; licensed for non-commercial research only


@pytest.fixture(scope="module")
def registry() -> PackRegistry:
    return PackRegistry(paths.model_search_path())


def site(use: str, embedder: str | None = None) -> Config:
    config = Config(site=SiteConfig(use=use))
    if embedder is not None:
        config = dataclasses.replace(config, models=dataclasses.replace(config.models, embedder=embedder))
    return config


def write(tmp_path, text: str):
    path = tmp_path / "appliance.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_site_table_and_the_pack_rules_spell_the_uses_alike():
    assert (defaults.COMMERCIAL, defaults.RESEARCH, defaults.UNDECLARED) == (COMMERCIAL, RESEARCH, UNDECLARED)
    assert SITE_USES == (COMMERCIAL, RESEARCH)


def test_each_use_gets_the_best_pack_its_manifests_allow(registry):
    packs = registry.packs().values()
    clean = defaults.default_embedder(packs, COMMERCIAL)
    assert clean.commercial_use and clean.kind == "embedding"
    assert all(p.commercial_use for p in defaults.ranked_embedders(packs, COMMERCIAL))
    assert defaults.default_embedder(packs, RESEARCH).id == RESEARCH_PACK
    assert defaults.default_embedder(packs, UNDECLARED).id == RESEARCH_PACK
    only_research = [p for p in packs if not p.commercial_use]
    with pytest.raises(ApplianceError) as error:
        defaults.default_embedder(only_research, COMMERCIAL)
    assert error.value.code is ErrorCode.PACK_NOT_FOUND and RESEARCH_PACK in error.value.detail


def test_a_declared_use_without_an_embedder_resolves_at_load(tmp_path, registry):
    clean = defaults.default_embedder(registry.packs().values(), COMMERCIAL)
    assert load_config(write(tmp_path, '[site]\nuse = "commercial"\n')).models.embedder == clean.id
    assert load_config(write(tmp_path, '[site]\nuse = "research"\n')).models.embedder == RESEARCH_PACK
    # undeclared: the table's default, as before (an empty file still gives Config())
    assert load_config(write(tmp_path, "")).models.embedder == Config().models.embedder
    # an explicit choice is kept, and judged at start-up
    explicit = load_config(write(tmp_path, f'[site]\nuse = "commercial"\n[models]\nembedder = "{RESEARCH_PACK}"\n'))
    assert explicit.models.embedder == RESEARCH_PACK


def test_a_bad_use_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ApplianceError) as error:
        load_config(write(tmp_path, '[site]\nuse = "business"\n'))
    assert error.value.code is ErrorCode.CONFIG_INVALID
    assert error.value.detail.startswith("site.use:") and "commercial" in error.value.detail


def test_the_refusal_names_the_pack_its_licence_and_the_clean_alternative(registry):
    pack = registry.get(RESEARCH_PACK)
    with pytest.raises(ApplianceError) as error:
        defaults.check_site_use(COMMERCIAL, pack, registry, "edge")
    clean = defaults.default_embedder(registry.packs().values(), COMMERCIAL)
    detail = error.value.detail
    assert error.value.code is ErrorCode.LICENCE_REFUSED and ErrorCode.LICENCE_REFUSED.exit_status == 44
    assert pack.label in detail and pack.licence in detail and clean.id in detail and clean.licence in detail
    assert defaults.check_site_use(RESEARCH, pack, registry, "edge") is None
    assert defaults.check_site_use(COMMERCIAL, clean, registry, "edge") is None


def test_an_undeclared_site_is_warned_at_every_start(registry, caplog):
    with caplog.at_level(logging.WARNING, logger="appliance.packs.defaults"):
        warning = defaults.check_site_use(UNDECLARED, registry.get(RESEARCH_PACK), registry, "matcher")
    assert warning and "not declared" in warning and "commercial" in warning
    assert any("matcher: site.use is not declared" in r.getMessage() for r in caplog.records)


def test_every_service_and_the_desk_refuse_before_loading_anything(tmp_path):
    from appliance.edge.app import EdgeApp
    from appliance.matcher.app import build as build_matcher
    from appliance.matcher.enrollment_desk import EnrollmentDesk
    from appliance.web.app import create_app

    config = site(COMMERCIAL, RESEARCH_PACK)
    pipeline = FacePipeline(config)  # lazy: no model is loaded by the constructor
    starts = {
        "edge": lambda: EdgeApp.build(config, site=None),
        "matcher": lambda: build_matcher(config, site=None),
        "console": lambda: create_app(config, tmp_path / "data"),
        "enrollment": lambda: EnrollmentDesk(None, None, pipeline, config),
    }
    for service, start in starts.items():
        with pytest.raises(ApplianceError) as error:
            start()
        assert error.value.code is ErrorCode.LICENCE_REFUSED, service
        assert error.value.detail.startswith(f"{service}: ")
    assert pipeline._embedder is None and pipeline._landmarker is None
    assert not (tmp_path / "data").exists()


def test_appliance_site_use_exit_status_says_the_state(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    cases = {"": 1, '[site]\nuse = "commercial"\n': 0, '[site]\nuse = "research"\n': 0,
             f'[site]\nuse = "commercial"\n[models]\nembedder = "{RESEARCH_PACK}"\n': 44}
    for text, status in cases.items():
        capsys.readouterr()
        assert main(["--config", str(write(tmp_path, text)), "site", "use"]) == status, text
        out = capsys.readouterr().out
        assert '"status": "%s"' % {0: "ok", 1: "undeclared", 44: "refused"}[status] in out


def test_the_shipped_file_declared_commercial_evaluates_on_the_clean_pack(monkeypatch, tmp_path):
    """``appliance eval verification`` builds its pipeline from the loaded file: with the shipped
    configuration declared commercial (the environment override a fleet uses) it is the clean pack."""
    import argparse

    from appliance.cli.common import pipeline_from

    monkeypatch.setenv("APPLIANCE__SITE__USE", COMMERCIAL)
    args = argparse.Namespace(config=str(paths.config_file()), pack=None)
    pipeline = pipeline_from(args)
    assert pipeline.embedder_pack.commercial_use and args.loaded_config.site.use == COMMERCIAL
    assert pipeline._embedder is None  # chosen from the manifests, nothing loaded


def test_the_edge_command_of_a_commercial_site_refuses_the_research_pack(tmp_path):
    """``appliance edge`` as its unit starts it, on a site declared commercial whose file names the
    non-commercial pack: exit status 44 and the reason on stderr, before any camera or store opens."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "APPLIANCE__SITE__USE": COMMERCIAL, "APPLIANCE__MODELS__EMBEDDER": RESEARCH_PACK,
           "APPLIANCE_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, "-m", "appliance", "edge", "--site", str(tmp_path / "site"),
                             "--device", "door-1", "--source", str(tmp_path / "camera")],
                            capture_output=True, text=True, env=env, cwd=paths.REPO_ROOT, timeout=120)
    assert result.returncode == ErrorCode.LICENCE_REFUSED.exit_status, result.stdout + result.stderr
    assert RESEARCH_PACK in result.stderr and "dlib-resnet-v1" in result.stderr, result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.db"))
