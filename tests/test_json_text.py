"""``json_text``: strict JSON, a non-finite number written as null."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from appliance import json_text


def test_non_finite_numbers_become_null_wherever_they_are():
    value = {"eer": math.nan, "band": (np.float32(-np.inf), np.float64(0.25)), "rows": [{"p95": np.float32(1.5)}],
             "count": 3, "name": "NaN"}
    text = json_text.dumps(value)
    assert json.loads(text) == {"eer": None, "band": [None, 0.25], "rows": [{"p95": 1.5}], "count": 3, "name": "NaN"}
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text


def test_what_finite_cannot_see_is_refused_not_written_as_nan():
    class Rate:  # a value only the caller's default= turns into a number
        def __float__(self) -> float:
            return math.nan

    with pytest.raises(ValueError):
        json_text.dumps({"rate": Rate()}, default=float)
