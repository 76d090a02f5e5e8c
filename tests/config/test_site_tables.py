"""The ``[site]`` table: the declared use, its allowed values and its default (undeclared)."""
from __future__ import annotations

import pytest

from appliance.config import Config, load_config, schema, validate
from appliance.config.site_tables import COMMERCIAL, RESEARCH, UNDECLARED, SiteConfig
from appliance.errors import ApplianceError, ErrorCode


def test_undeclared_is_the_default_and_both_uses_load(tmp_path):
    assert Config().site == SiteConfig(UNDECLARED)
    path = tmp_path / "appliance.toml"
    for use in (COMMERCIAL, RESEARCH):
        path.write_text(f'[site]\nuse = "{use}"\n', encoding="utf-8")
        assert load_config(path).site.use == use
    assert validate(Config(site=SiteConfig(COMMERCIAL))).site.use == COMMERCIAL


def test_unknown_keys_and_values_are_refused_with_the_allowed_ones(tmp_path):
    path = tmp_path / "appliance.toml"
    for text, words in (('[site]\nuse = "Commercial"\n', ("site.use", "'commercial'", "'research'")),
                        ('[site]\npurpose = "commercial"\n', ("site.purpose", "allowed: use"))):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ApplianceError) as error:
            load_config(path)
        assert error.value.code is ErrorCode.CONFIG_INVALID
        assert all(word in error.value.detail for word in words), error.value.detail


def test_the_schema_describes_the_table():
    site = schema()["$defs"]["SiteConfig"]["properties"]["use"]
    assert set(site["enum"]) == {"", COMMERCIAL, RESEARCH}
    assert "commercial" in site["description"] and "research" in site["description"]
