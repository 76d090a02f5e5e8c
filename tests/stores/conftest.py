"""Real key files and stores in tmp_path, and one principal per role."""
from __future__ import annotations

import pytest

from appliance.security.keys import FileKeyProvider, ensure_keys
from appliance.security.roles import Principal, Role


@pytest.fixture
def keys(tmp_path):
    provider = FileKeyProvider(tmp_path / "keys")
    ensure_keys(provider)
    return provider


@pytest.fixture
def principals() -> dict[Role, Principal]:
    return {role: Principal(f"acct-{role.name.lower()}", role) for role in Role}
