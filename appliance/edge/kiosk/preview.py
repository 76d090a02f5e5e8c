"""The camera preview on the kiosk screen: a few frames a second, downscaled, kept in memory.

The pass loop offers every frame; at most ``fps`` a second are kept, downscaled to ``width``
pixels, and only the latest one (a new one replaces it). It is JPEG-encoded once, on the first
request for it, by the page's thread, not the pass loop's. No frame is ever written to disk and
nothing of it outlives the next frame (issue 14: "frames never stored").
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from appliance.edge.kiosk.screen import FaceBox

JPEG_QUALITY = 70  # enough for a person to place their face; small frames on the loopback


@dataclass
class PreviewFrame:
    seq: int
    image: np.ndarray  # the downscaled BGR frame
    face: FaceBox | None
    jpeg: bytes = b""


class Preview:
    """The latest preview frame; ``fps`` 0 turns the preview off (nothing is kept)."""

    def __init__(self, fps: float, width: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.fps, self.width, self.clock = fps, width, clock
        self._latest: PreviewFrame | None = None
        self._next_at = 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.fps > 0

    @property
    def seq(self) -> int:
        return self._latest.seq if self._latest is not None else 0

    def offer(self, image: np.ndarray, face: FaceBox | None) -> bool:
        """Keep ``image`` (downscaled) when the rate allows; True when it was kept."""
        now = self.clock()
        if not self.enabled or now < self._next_at:
            return False
        self._next_at = now + 1.0 / self.fps
        small = downscale(image, self.width)
        with self._lock:
            self._latest = PreviewFrame(self.seq + 1, small, face)
        return True

    def latest(self) -> PreviewFrame | None:
        """The latest frame, JPEG-encoded (once) for the page; None before the first."""
        import cv2

        with self._lock:
            frame = self._latest
        if frame is None:
            return None
        if not frame.jpeg:
            ok, encoded = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                frame.jpeg = encoded.tobytes()
        return frame

    def clear(self) -> None:
        with self._lock:
            self._latest = None


def downscale(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` scaled to ``width`` pixels wide (aspect kept); never enlarged, always a copy."""
    import cv2

    height, current = image.shape[:2]
    if current <= width:
        return image.copy()
    return cv2.resize(image, (width, max(1, round(height * width / current))), interpolation=cv2.INTER_AREA)
