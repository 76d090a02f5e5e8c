"""JSON as people's tools read it: strict RFC 8259, so a rate nothing could estimate is ``null``.

``json.dumps`` writes a float NaN or infinity as the bare words ``NaN`` and ``Infinity``, which
jq, browsers and most JSON parsers refuse: one undefined rate (an EER with no impostor pairs, a
liveness score of a refused frame) made a whole report unreadable to them. The reports and the
CLI's ``--json`` outputs go through ``dumps``; what reads them already takes ``null`` as "too
few comparisons to estimate".
"""
from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float in it (NaN, ±infinity) replaced by None; dicts, lists
    and tuples are walked (a tuple becomes a list), a numpy float counts as a float."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if isinstance(value, float) or _numpy_float(value):  # numpy's float64 is a float, float32 is not
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _numpy_float(value: Any) -> bool:
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__.startswith("float")


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of ``finite(value)``, refusing anything non-finite left (``allow_nan=False``)."""
    return json.dumps(finite(value), allow_nan=False, **options)
