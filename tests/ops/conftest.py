"""Real key files, real SQLCipher stores and the protected-data facade in tmp_path."""
from __future__ import annotations

import pytest

from appliance.ops.accounts import ACCOUNTS_DB, Accounts, AccountStore
from appliance.security.keys import FileKeyProvider, ensure_keys
from appliance.stores.protected import ProtectedData


class Clock:
    """Wall time the lockout and session tests can move forward."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys(tmp_path):
    provider = FileKeyProvider(tmp_path / "keys")
    ensure_keys(provider)
    ensure_keys(provider, (ACCOUNTS_DB,))
    return provider


@pytest.fixture
def data(tmp_path, keys):
    with ProtectedData(tmp_path / "data", keys) as protected:
        yield protected


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def accounts(tmp_path, keys, data, clock):
    store = AccountStore.open(tmp_path / "data" / "accounts.db", keys)
    manager = Accounts(store, data.audit, idle_timeout_s=600, clock=clock)
    yield manager
    manager.close()
