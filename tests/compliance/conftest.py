"""Fixtures: a fresh site and a demo-like site in the test's own folder (``compliancekit``)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from compliancekit import DemoSite, demo_site_in, fresh_site_in  # noqa: E402


@pytest.fixture
def fresh_site(tmp_path) -> DemoSite:
    return fresh_site_in(tmp_path)


@pytest.fixture
def demo_site(tmp_path) -> DemoSite:
    return demo_site_in(tmp_path)
