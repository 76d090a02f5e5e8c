"""The too-close gate, in colour as in grey: a face that fills the frame is not judged, the door
asks the person to step back (no alarm), and the same face with its surroundings is judged."""
from __future__ import annotations

import numpy as np
import pytest
from framekit import close_up

from appliance.liveness import framing
from appliance.liveness.checker import NOT_JUDGED

FRAME = (480, 640)
CENTRED = (220.0, 120.0, 200.0, 240.0)  # x, y, w, h of a face in the middle of a VGA frame


def test_context_counts_face_boxes_of_frame_around_the_face():
    assert framing.context(FRAME, CENTRED) == pytest.approx(np.sqrt(640 / 200 * 480 / 240))
    assert framing.context(FRAME, (0.0, 0.0, 640.0, 480.0)) == pytest.approx(1.0)  # face-filling crop
    assert framing.context(FRAME, (600.0, 120.0, 200.0, 240.0)) < 1.0  # face cut by the frame edge
    assert not framing.too_close(FRAME, CENTRED) and framing.too_close(FRAME, (0.0, 0.0, 640.0, 480.0))


def test_not_judged_reasons_all_tell_the_person_what_to_do():
    assert framing.REASON_TOO_CLOSE in NOT_JUDGED and all(NOT_JUDGED.values())


def test_a_colour_face_filling_the_frame_is_not_judged(pipeline, checker, spoof_samples):
    frame = spoof_samples["image_T1"]
    face = pipeline.detect(frame).subject
    assert checker.judge([frame], [face], level="passive").live  # with its surroundings: judged, live
    near = close_up(frame, face.box)
    near_face = pipeline.detect(near).subject
    assert framing.context(near.shape, near_face.box) < framing.MIN_CONTEXT
    decision = checker.judge([near], [near_face], level="passive")
    assert decision.mode == "colour" and not decision.live and not decision.attack  # no alarm either
    assert decision.reasons == (framing.REASON_TOO_CLOSE,) and np.isnan(decision.score)
