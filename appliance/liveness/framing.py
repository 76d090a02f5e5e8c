"""The "too close" gate of liveness, in colour and grey alike: how much frame surrounds the face.

The passive cues read the face's surroundings - MiniFASNet's crops are the face box x2.7 and
x4.0, ``frame_edges`` looks for a paper edge or a bezel beside the face, the grey path's tone
and ring cues read a wider crop - so a frame that the face fills leaves them nothing to read.
A door camera framing a person at the turnstile shows two face boxes or more; a face that fills
the frame is a person leaning into the lens or an instrument held against it (a phone whose
bezel is then out of view). Such a presentation is not judged: nothing is accepted, no alarm is
raised, and the door asks the person to step back, after which every cue can read the scene.
"""
from __future__ import annotations

import math

Box = tuple[float, float, float, float]

# Geometric mean over both axes of (frame extent centred on the face) / (face box), set from
# bona fide only (the door's detector; docs/liveness.md "Too close, in colour and grey"):
# AT&T/ORL 0.92-1.37 (face-filling crops, 397 of 400 below 1.3), Yale 1.33-2.01, CelebA (2,143
# faces) 1.24-8.5 with a median of 2.5, 6 below 1.3 and 1 % below 1.43, the web photos 1.58 and up.
MIN_CONTEXT = 1.3
REASON_TOO_CLOSE = "too_close"
TOO_CLOSE_GUIDANCE = "move back from the camera"  # a msgid of the door catalog


def context(shape: tuple[int, ...], box: Box) -> float:
    """How many face boxes of frame surround the face (geometric mean of both axes)."""
    height, width = shape[:2]
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    across = 2 * max(0.0, min(cx, width - cx)) / max(w, 1.0)
    down = 2 * max(0.0, min(cy, height - cy)) / max(h, 1.0)
    return float(math.sqrt(across * down))


def too_close(shape: tuple[int, ...], box: Box) -> bool:
    """True when the frame shows less than ``MIN_CONTEXT`` face boxes around the face."""
    return context(shape, box) < MIN_CONTEXT
