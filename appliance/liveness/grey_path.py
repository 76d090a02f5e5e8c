"""The greyscale / near-infrared liveness path (issue 15): which cues count in grey, and when not to judge.

A grey frame (an NIR or monochrome turnstile camera, a grey archive) voids every colour cue
(chroma, saturation, sub-pixel colour fringes, skin white point), and MiniFASNet, trained on
colour, calls grey faces spoofs: median live probability 0.007 on Yale bona fide against
0.000-0.01 on grey attacks made from them, so its logits carry no usable evidence here and the
grey fusion leaves them out (its model floor is 0: no veto). The grey fusion reads the
luminance cues of ``image_cues`` that keep their meaning (halftone/lattice periodicity,
sharpness loss, black level and dynamic range, glare, frame edges, luminance LBP texture) and
the cues measured here: sensor noise, the tone of the face itself (a paper mask's wearer brings
real black hair into the wide crop, but paper under the eyes cannot reach black), octave band
energies of the face, the surroundings' detail relative to the face, and edges in rings round
the face outline (a mask's cut edge). It is calibrated on
grey bona fide of its own domain (``appliance.evaluation.pad_grey``), not on grey copies of
colour photos alone.

Two gates come before any score: the presentation is not judged, the door asks the person to
change something, and nothing is accepted:

* ``too_close`` (``framing``, the same gate as in colour): the frame shows less than
  ``MIN_CONTEXT`` times the face box around the face. The cues that read the surroundings (tone
  on a 2x crop, frame edges on 3x) then see only the face, and a face-filling crop is not what a
  door camera delivers (AT&T/ORL: 0.92-1.37). Guidance: step back.
* ``too_dark``: sensor noise above ``MAX_NOISE`` grey levels on the face. The gain that brings a
  dark scene back drowns the texture cues (a print in low light looks like skin under noise),
  so no texture judgement is possible. Guidance: more light (an NIR illuminator).

Both limits are set from bona fide frames only (never fitted to attacks); docs/liveness.md
gives the distributions they were read from.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from appliance.liveness.framing import MIN_CONTEXT, REASON_TOO_CLOSE, TOO_CLOSE_GUIDANCE, Box, context
from appliance.liveness.image_cues import TEXTURE_BINS

# Luminance cues of image_cues that keep their meaning in a grey frame (the colour ones are void).
IMAGE_FEATURES = ("periodicity", "sharpness_loss", "gamut", "glare", "frame_edges", "black_level", "midtones") \
    + tuple(f"texture_y_{b}" for b in range(TEXTURE_BINS))
NOISE = "grey_noise"  # sensor noise on the face, grey levels (a fusion input and the too_dark gate)
CONTEXT = "grey_context"  # frame extent around the face in face boxes (the too_close gate only)
# Tone of the face itself (the wide-crop tone cues see a mask wearer's real hair and background):
# paper and a backlit screen cannot reach the black of pupils and nostrils, and print/screen
# tone curves compress the range and move the midtones.
FACE_TONE = ("grey_face_black", "grey_face_range", "grey_face_low", "grey_face_mid")
# Octave band energies of the face (log std ratio of adjacent difference-of-Gaussian bands):
# recapture is a second low-pass, halftone and lattices add energy in one band.
FACE_SLOPES = ("grey_slope_fine", "grey_slope_mid", "grey_slope_coarse")
# Fine / middle band energy of the surroundings (1.8x box) relative to the face: a print or a
# screen puts face and surroundings on one plane under one blur, a real head stands apart.
SURROUND = ("grey_surround_fine", "grey_surround_mid")
# Edges facing the face centre in elliptical rings just inside and around the face outline, relative
# to the gradient inside the face: the cut edge of a paper mask or of a cut-out, a print's border.
RING_BANDS = ((0.8, 0.95), (0.95, 1.1), (1.1, 1.25), (1.25, 1.4))  # in half face boxes from the centre
RING = tuple(f"grey_ring_{i}" for i in range(len(RING_BANDS)))
RING_INNER = 0.7  # half face boxes: the inner face the ring edges are compared with
GREY_CUES = (NOISE, CONTEXT) + FACE_TONE + FACE_SLOPES + SURROUND + RING
FEATURES = IMAGE_FEATURES + (NOISE,) + FACE_TONE + FACE_SLOPES + SURROUND + RING  # what the grey fusion reads
FACE_TONE_SCALE = 0.9  # of the face box: the face without hair or background
FACE_BAND_SCALE = 0.6  # of the face box: cheeks, nose, eyes (as image_cues' skin patch)
SURROUND_SCALE = 1.8  # of the face box: the face and what stands around it
BAND_SIGMAS = (0.6, 1.2, 2.4, 4.8)  # px: octave steps of the difference-of-Gaussian bands
TONE_PERCENTILES = (1, 10, 50, 99)  # black, shadow, midtone, white of the face

# Noise sigma (grey levels) on the smoothest fifth of the face. Measured on bona fide: Yale <= 1.04,
# grey CelebA p95 1.8, max 3.5; a print in low light brought back by the gain: 3.1-14.
MAX_NOISE = 4.0
NOISE_BLOCK = 8  # px: blocks over which the noise residual is averaged
NOISE_QUANTILE = 20  # percentile of block noise: the smooth blocks, where texture does not count as noise
# Immerkaer's noise kernel: the difference of two Laplacians, blind to linear ramps; its L2 norm
# is 6, and E|N(0, s)| = s * sqrt(2 / pi).
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_NOISE_SCALE = math.sqrt(math.pi / 2) / 6

REASON_TOO_DARK = "too_dark"
REFUSALS = (REASON_TOO_CLOSE, REASON_TOO_DARK)
# what the door shows instead of a refusal: the person can fix it (msgids of the door catalog)
TOO_DARK_GUIDANCE = "more light on your face"  # the quality rule's own prompt for a dark face
GUIDANCE = {REASON_TOO_CLOSE: TOO_CLOSE_GUIDANCE, REASON_TOO_DARK: TOO_DARK_GUIDANCE}

def _crop(image: np.ndarray, box: Box, scale: float) -> np.ndarray:
    """The box scaled by ``scale`` about its centre, cut to the frame."""
    height, width = image.shape[:2]
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(max(0, cx - w * scale / 2)), int(max(0, cy - h * scale / 2))
    x1, y1 = int(min(width, cx + w * scale / 2)), int(min(height, cy + h * scale / 2))
    return image[y0:y1, x0:x1]


def noise(grey: np.ndarray, box: Box) -> float:
    """Sensor noise sigma on the face (grey levels): Immerkaer's residual on its smoothest blocks."""
    height, width = grey.shape[:2]
    x, y, w, h = box
    x0, y0 = int(max(0, x)), int(max(0, y))
    x1, y1 = int(min(width, x + w)), int(min(height, y + h))
    face = grey[y0:y1, x0:x1].astype(np.float32)
    if min(face.shape[:2]) < NOISE_BLOCK + 2:
        return 0.0
    residual = np.abs(cv2.filter2D(face, -1, _NOISE_KERNEL)[1:-1, 1:-1]) * _NOISE_SCALE
    rows, cols = (residual.shape[0] // NOISE_BLOCK) * NOISE_BLOCK, (residual.shape[1] // NOISE_BLOCK) * NOISE_BLOCK
    blocks = residual[:rows, :cols].reshape(rows // NOISE_BLOCK, NOISE_BLOCK, cols // NOISE_BLOCK, NOISE_BLOCK)
    return float(np.percentile(blocks.mean(axis=(1, 3)), NOISE_QUANTILE))


def band_energies(grey: np.ndarray, count: int = len(BAND_SIGMAS)) -> list[float]:
    """Log std of the first ``count`` difference-of-Gaussian octave bands, finest first (``BAND_SIGMAS``)."""
    image = grey.astype(np.float32)
    energies, previous = [], image
    for sigma in BAND_SIGMAS[:count]:
        blurred = cv2.GaussianBlur(image, (0, 0), sigma)
        energies.append(float(np.log(np.std(previous - blurred) + 1e-3)))
        previous = blurred
    return energies


def face_tone(grey: np.ndarray, box: Box) -> dict[str, float]:
    face = _crop(grey, box, FACE_TONE_SCALE)
    if face.size == 0:
        return dict.fromkeys(FACE_TONE, 0.0)
    black, shadow, mid, white = np.percentile(face, TONE_PERCENTILES)
    span = white - black + 1.0
    return dict(zip(FACE_TONE, (float(black / 255), float((white - black) / 255), float((shadow - black) / span),
                                float((mid - black) / span))))


def bands(grey: np.ndarray, box: Box) -> dict[str, float]:
    centre = _crop(grey, box, FACE_BAND_SCALE)
    face, around = _crop(grey, box, 1.0), _crop(grey, box, SURROUND_SCALE)
    if min(centre.shape[:2]) < 16:
        return dict.fromkeys(FACE_SLOPES + SURROUND, 0.0)
    energy = band_energies(centre)
    slopes = [energy[i] - energy[i + 1] for i in range(len(FACE_SLOPES))]
    inside, outside = band_energies(face, len(SURROUND)), band_energies(around, len(SURROUND))
    return dict(zip(FACE_SLOPES + SURROUND, slopes + [outside[0] - inside[0], outside[1] - inside[1]]))


def rings(grey: np.ndarray, box: Box) -> dict[str, float]:
    """Radial edge strength in each of ``RING_BANDS`` relative to the gradient of the inner face."""
    height, width = grey.shape[:2]
    x, y, w, h = box
    reach = RING_BANDS[-1][1]
    x0, y0 = int(max(0, x + w / 2 - reach * w / 2)), int(max(0, y + h / 2 - reach * h / 2))
    x1, y1 = int(min(width, x + w / 2 + reach * w / 2)), int(min(height, y + h / 2 + reach * h / 2))
    crop = grey[y0:y1, x0:x1].astype(np.float32)
    if min(crop.shape[:2]) < 8:
        return dict.fromkeys(RING, 0.0)
    gx, gy = cv2.Sobel(crop, cv2.CV_32F, 1, 0), cv2.Sobel(crop, cv2.CV_32F, 0, 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    u, v = (xx - x - w / 2) / (w / 2), (yy - y - h / 2) / (h / 2)
    radius = np.hypot(u, v)
    radial = np.abs(gx * u + gy * v) / (radius + 1e-3)
    inner = float(np.mean(np.hypot(gx, gy)[radius < RING_INNER])) if (radius < RING_INNER).any() else 0.0
    out = {}
    for name, (low, high) in zip(RING, RING_BANDS):
        band = (radius >= low) & (radius < high)
        out[name] = float(np.mean(radial[band]) / (inner + 1e-3)) if band.any() else 0.0
    return out


def measure(bgr: np.ndarray, box: Box) -> dict[str, float]:
    """The grey path's own cues of one frame (added to the image cues of ``image_cues.measure``)."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    return {NOISE: noise(grey, box), CONTEXT: context(grey.shape, box), **face_tone(grey, box), **bands(grey, box),
            **rings(grey, box)}


def refusal(values: dict[str, float]) -> str | None:
    """Why this grey presentation cannot be judged (``REFUSALS``), or None when it can."""
    if values[CONTEXT] < MIN_CONTEXT:
        return REASON_TOO_CLOSE
    if values[NOISE] > MAX_NOISE:
        return REASON_TOO_DARK
    return None
