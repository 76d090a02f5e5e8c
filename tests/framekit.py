"""A frame cut to a given number of face boxes around its face: as a camera sees a person who
leans into the lens (the too-close gate of ``liveness.framing``), at the frame's own resolution."""
from __future__ import annotations

import numpy as np

from appliance.liveness.framing import Box

LEANING_IN = 1.15  # face boxes of frame around a face that leans into the lens (below MIN_CONTEXT)


def close_up(frame: np.ndarray, box: Box, boxes: float = LEANING_IN) -> np.ndarray:
    """``frame`` cut to ``boxes`` face boxes around the face ``box`` (x, y, w, h), within the frame."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(max(0, cx - w * boxes / 2)), int(max(0, cy - h * boxes / 2))
    return frame[y0:int(cy + h * boxes / 2), x0:int(cx + w * boxes / 2)].copy()
