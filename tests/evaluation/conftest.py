"""Evaluation fixtures: a few real bona fide photos to turn into synthetic attacks."""
from __future__ import annotations

import pytest

from appliance.capture.images import read_image


@pytest.fixture(scope="module")
def photos(faces):
    return [read_image(p) for p in sorted((faces / "celeba-dev").glob("*/*.jpg"))[::300][:4]]
