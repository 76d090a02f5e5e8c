"""``appliance site`` warns while the site has doors but no access group (everyone enrolled
opens every door), and the health report's site checks say the same: real key files, real
SQLCipher stores and a real PKI with a provisioned door in a data folder."""
from __future__ import annotations

import pytest

from appliance.access.schedule import WeeklySchedule
from appliance.broker.pki import ProjectPKI
from appliance.cli.main import main
from appliance.cli.site_commands import PKI_DIR, site_checks
from appliance.config import load_config
from appliance.matcher.site_policy import open_site_store
from appliance.ops.health import OK, WARN
from appliance.ops.provisioning import enroll_device
from appliance.security.roles import Role
from appliance.stores.protected import ProtectedData
from authkit import make_token


@pytest.fixture
def site(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    config_path = tmp_path / "appliance.toml"
    config_path.write_text("")
    assert main(["--config", str(config_path), "keys", "init"]) == 0
    config = load_config(config_path)
    ProtectedData.from_config(config).close()  # the central stores exist
    pki = ProjectPKI(data_dir / PKI_DIR)
    pki.create_ca()
    enroll_device(pki, "door-a")
    return config_path, config, data_dir, make_token(data_dir, Role.AUDITOR, config=config)


def test_a_site_with_doors_and_no_access_group_is_warned(site, capsys):
    config_path, config, data_dir, token = site
    capsys.readouterr()
    assert main(["--config", str(config_path), "--token", token, "site", "filing"]) == 0
    err = capsys.readouterr().err
    assert "1 door(s) but no access group: everyone enrolled opens every door" in err
    (access,) = [c for c in site_checks(config, data_dir) if c.name == "access"]
    assert access.status == WARN

    with ProtectedData.from_config(config) as data:
        store = open_site_store(data)
        try:
            store.put_group("office", WeeklySchedule.from_mapping({"mon": ["08:00-18:00"]}))
        finally:
            store.close()
    assert main(["--config", str(config_path), "--token", token, "site", "filing"]) == 0
    assert "access group" not in capsys.readouterr().err
    (access,) = [c for c in site_checks(config, data_dir) if c.name == "access"]
    assert access.status == OK
