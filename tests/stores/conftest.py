"""Fixtures of the store tests."""
from __future__ import annotations

import pytest

from appliance.stores import audit_writer


@pytest.fixture
def quick_retries(monkeypatch):
    """The audit writer retries a failed commit within a tenth of a second (pauses 0.05, 0.1,
    0.2 s and then every 0.2 s), not the product's 0.5 s doubling to 10 s."""
    monkeypatch.setattr(audit_writer, "RETRY_FIRST_S", 0.05)
    monkeypatch.setattr(audit_writer, "RETRY_MAX_S", 0.2)
