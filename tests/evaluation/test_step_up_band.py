"""The step-up band table: who is challenged, which attacks still pass without a challenge."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.evaluation.step_up_band import band_table


def test_the_band_moves_presentations_from_passing_to_challenged():
    labels = ["bona_fide"] * 4 + ["print"] * 2 + ["screen"] * 2
    # bona fide: refused, just above the threshold, clear, very clear; attacks: refused or just above
    margins = np.array([-np.inf, 0.5, 2.5, 5.0, -np.inf, 0.8, 1.5, np.nan])
    zero, two = band_table(labels, margins, bands=(0.0, 2.0))
    assert zero["bona_fide_challenged"] == 0.0 and zero["bona_fide_refused"] == pytest.approx(0.25)
    assert zero["attacks_passing_unchallenged"] == {"print": 0.5, "screen": 1.0}  # no face: not counted
    assert two["bona_fide_challenged"] == pytest.approx(0.25)
    assert two["attacks_passing_unchallenged"] == {"print": 0.0, "screen": 0.0}
    assert zero["worst_species"] == "screen"
