"""Model-free image cues of a recaptured face (pure image math, no I/O, no models).

Each cue returns an *attack* score, 0 = nothing suspicious, growing with the evidence; the
fusion (``liveness.fusion``) weighs them. What they look for:

* ``periodicity`` - isolated peaks in the spectrum of the face skin: halftone dots and the
  pixel grid of a screen, aliased by the camera (moire). JPEG's 8x8 block grid is masked out.
* ``sharpness_loss`` - recapture is a second optical low-pass: little energy in the top
  octave relative to the octave below it.
* ``gamut`` - prints cannot reach deep black and are less saturated; screens lift blacks
  with their backlight: the darkest percentile of the wide face crop, relative to its range.
* ``glare`` - a large, smooth, near-white, colourless blob on the face region (specular
  reflection of a glossy print or a screen).
* ``frame_edges`` - long straight edges beside the face on both sides or above and below it:
  a sheet of paper or a phone/tablet bezel held in front of the camera.
* ``texture`` - colour texture (Boulkenafet et al., 2015): uniform LBP histograms of the
  face in the YCrCb and HSV channels. Recapture changes the joint statistics of luminance
  and chroma micro-texture; the fusion learns which bins matter. It is a descriptor, not
  a score, so it is used by the fusion but left out of the evidence summary.
* ``fine_texture`` / ``fine_contrast`` - the same uniform LBP histogram of the luma, and the level
  of its finest detail, on the face centre at *native* resolution (``texture`` sees a 64 px
  copy, which averages ink dots, paper grain and a second capture's blur away). Measured on the
  leave-one-species-out set: it is what lowers the paper-mask and cut-out figures.

These are weak, domain-dependent signals: their weights come from calibration and the
synthetic set exaggerates what they measure (see docs/liveness.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PATCH = 96  # face patch side for spectral cues, native resolution when the face is larger
JPEG_BLOCK = 8
PEAK_BAND = (0.18, 0.5)  # cycles/pixel searched for periodic peaks
GLARE_VALUE, GLARE_SATURATION = 235, 40
FRAME_LINE_FRACTION = 0.9  # a frame edge spans at least this much of the face height/width
EDGE_FACE_PX = 80.0  # face height at which frame edges are searched
TONE_SAMPLES = 20000  # pixels sampled for the tone percentiles
TEXTURE_SIZE = 64  # face crop side for the colour texture
TEXTURE_CHANNELS = ("y", "cr", "cb", "h", "s", "v")
TEXTURE_BINS = 10  # uniform rotation-invariant LBP(8,1): 9 uniform codes + 1 for the rest
TEXTURE_NAMES = tuple(f"texture_{c}_{b}" for c in TEXTURE_CHANNELS for b in range(TEXTURE_BINS))
FINE_NAMES = tuple(f"texture_fine_{b}" for b in range(TEXTURE_BINS))  # "texture_": kept out of the summary
FINE_DETAIL_SIGMA = 1.0  # px: the residual below this blur is the finest detail (grain, dots, noise)
FINE_FLOOR = 0.05  # grey levels: keeps the log finite on flat (synthetic) patches
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


@dataclass(frozen=True)
class ImageCues:
    periodicity: float
    sharpness_loss: float
    gamut: float
    glare: float
    frame_edges: float
    skin_cr: float  # mean red-difference chroma of the face centre (screens shift it to blue)
    skin_cb: float
    chroma_detail: float  # colour fringes of aliased sub-pixels: chroma vs luma fine detail
    black_level: float  # darkest percentile of the wide crop (backlight, paper cannot reach black)
    saturation: float  # 90th percentile saturation of the wide crop (ink gamut)
    midtones: float  # median / top brightness (a screen's gamma lifts the midtones)
    chroma_periodicity: float  # periodicity of the red-difference chroma (sub-pixel stripes)
    texture: tuple[float, ...] = ()  # TEXTURE_BINS uniform-LBP bins per TEXTURE_CHANNELS channel
    fine_contrast: float = 0.0  # log median |finest detail| of the native face centre
    fine_texture: tuple[float, ...] = ()  # TEXTURE_BINS uniform-LBP bins of the native face centre luma

    def as_dict(self) -> dict[str, float]:
        values = {k: v for k, v in vars(self).items() if k not in ("texture", "fine_texture")}
        values.update({name: value for name, value in zip(TEXTURE_NAMES, self.texture)})
        values.update({name: value for name, value in zip(FINE_NAMES, self.fine_texture)})
        return values



def _region(image: np.ndarray, box: tuple[float, float, float, float], scale: float) -> np.ndarray:
    height, width = image.shape[:2]
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    half_w, half_h = w * scale / 2, h * scale / 2
    x0, y0 = int(max(0, cx - half_w)), int(max(0, cy - half_h))
    x1, y1 = int(min(width, cx + half_w)), int(min(height, cy + half_h))
    return image[y0:y1, x0:x1]


def _skin_patch(grey: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """The central face (cheeks, nose, forehead) at native resolution, at most PATCH px."""
    centre = _region(grey, box, 0.6)
    if min(centre.shape[:2]) < 24:
        return None
    side = min(PATCH, *centre.shape[:2])
    y0, x0 = (centre.shape[0] - side) // 2, (centre.shape[1] - side) // 2
    return centre[y0 : y0 + side, x0 : x0 + side].astype(np.float32)


def periodicity(grey: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Mean of the strongest peaks above the local spectral background (log magnitude)."""
    patch = _skin_patch(grey, box)
    if patch is None:
        return 0.0
    side = patch.shape[0]
    detail = patch - cv2.GaussianBlur(patch, (0, 0), 2.0)
    window = np.outer(np.hanning(side), np.hanning(side)).astype(np.float32)
    spectrum = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(detail * window))))
    background = cv2.medianBlur(spectrum.astype(np.float32), 5)
    excess = spectrum - background
    freq = np.fft.fftshift(np.fft.fftfreq(side))
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    radius = np.hypot(fx, fy)
    band = (radius >= PEAK_BAND[0]) & (radius <= PEAK_BAND[1])
    # JPEG block grid: multiples of 1/8 cycle/pixel on either axis
    def near_block(f: np.ndarray) -> np.ndarray:
        return np.abs(f * JPEG_BLOCK - np.round(f * JPEG_BLOCK)) < JPEG_BLOCK * 1.5 / side
    band &= ~(near_block(fx) | near_block(fy))
    if not band.any():
        return 0.0
    values = excess[band]
    return float(np.mean(np.sort(values)[-8:]))  # the strongest few peaks


def sharpness_loss(grey: np.ndarray, box: tuple[float, float, float, float]) -> float:
    patch = _skin_patch(grey, box)
    if patch is None:
        return 0.0
    fine = patch - cv2.GaussianBlur(patch, (0, 0), 0.8)
    coarse = cv2.GaussianBlur(patch, (0, 0), 0.8) - cv2.GaussianBlur(patch, (0, 0), 1.6)
    ratio = float(np.std(fine) / (np.std(coarse) + 1e-3))
    return -ratio  # less fine detail -> higher attack score


def tone(bgr: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """(gamut, black level, saturation, midtones) of the wide crop around the face."""
    wide = _region(bgr, box, 2.0)
    if wide.size == 0:
        return 0.0, 0.0, 0.0, 0.0
    step = max(1, int(np.sqrt(wide.shape[0] * wide.shape[1] / TONE_SAMPLES)))
    hsv = cv2.cvtColor(np.ascontiguousarray(wide[::step, ::step]), cv2.COLOR_BGR2HSV)
    value = hsv[..., 2].astype(np.float32)
    low, mid, high = np.percentile(value, [1, 50, 99])
    saturation = float(np.percentile(hsv[..., 1], 90)) / 255
    lifted = low / (high + 1e-3)
    return float(lifted - 0.5 * saturation), float(low / 255), saturation, float(mid / (high + 1e-3))


def glare(bgr: np.ndarray, box: tuple[float, float, float, float]) -> float:
    face = _region(bgr, box, 1.0)
    if face.size == 0:
        return 0.0
    hsv = cv2.cvtColor(face, cv2.COLOR_BGR2HSV)
    mask = ((hsv[..., 2] >= GLARE_VALUE) & (hsv[..., 1] <= GLARE_SATURATION)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return 0.0
    largest = stats[1:, cv2.CC_STAT_AREA].max()
    return float(largest / mask.size)  # eye catch-lights are tiny; a reflection is not


def frame_edges(grey: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Share of the four sides beside the face that have a long straight edge parallel to them.

    Searched in a window of 3x the face box, scaled so the face is EDGE_FACE_PX tall: the
    cost no longer grows with the frame, and the line lengths are in face units.
    """
    height, width = grey.shape[:2]
    x, y, w, h = box
    x0, y0 = int(max(0, x - w)), int(max(0, y - h))
    x1, y1 = int(min(width, x + 2 * w)), int(min(height, y + 2 * h))
    factor = min(1.0, EDGE_FACE_PX / max(h, 1.0))
    window = grey[y0:y1, x0:x1]
    if window.size == 0:
        return 0.0
    if factor < 1.0:
        window = cv2.resize(window, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    x, y, w, h = (x - x0) * factor, (y - y0) * factor, w * factor, h * factor
    edges = cv2.Canny(cv2.GaussianBlur(window, (5, 5), 0), 40, 120)
    lines = cv2.HoughLinesP(edges, 1, np.pi / 180, threshold=int(0.5 * min(w, h)) + 1,
                            minLineLength=int(FRAME_LINE_FRACTION * min(w, h)), maxLineGap=4)
    if lines is None:
        return 0.0
    sides = set()
    for ax, ay, bx, by in np.asarray(lines).reshape(-1, 4):
        dx, dy = bx - ax, by - ay
        length = np.hypot(dx, dy)
        if abs(dy) < 0.25 * length:  # horizontal-ish
            yy = (ay + by) / 2
            if yy < y - 0.15 * h:
                sides.add("top")
            elif yy > y + 1.3 * h:
                sides.add("bottom")
        elif abs(dx) < 0.25 * length:  # vertical-ish
            xx = (ax + bx) / 2
            if xx < x - 0.1 * w:
                sides.add("left")
            elif xx > x + 1.1 * w:
                sides.add("right")
    return len(sides) / 4


def _lbp_histogram(channel: np.ndarray) -> np.ndarray:
    values = channel.astype(np.int16)
    height, width = values.shape
    centre = values[1:-1, 1:-1]
    bits = np.stack([values[1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx] >= centre for dy, dx in _NEIGHBOURS], -1)
    transitions = np.count_nonzero(bits != np.roll(bits, 1, axis=-1), axis=-1)
    code = np.where(transitions <= 2, bits.sum(axis=-1), TEXTURE_BINS - 1)
    histogram = np.bincount(code.ravel(), minlength=TEXTURE_BINS).astype(np.float64)
    return histogram / histogram.sum()


def colour_texture(bgr: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, ...]:
    x, y, w, h = box
    side = max(w, h) * 0.8
    face = _region(bgr, (x + w / 2 - side / 2, y + h / 2 - side / 2, side, side), 1.0)
    if min(face.shape[:2]) < 8:
        return tuple([0.0] * len(TEXTURE_NAMES))
    face = cv2.resize(face, (TEXTURE_SIZE, TEXTURE_SIZE), interpolation=cv2.INTER_AREA)
    planes = [*cv2.split(cv2.cvtColor(face, cv2.COLOR_BGR2YCrCb)), *cv2.split(cv2.cvtColor(face, cv2.COLOR_BGR2HSV))]
    return tuple(float(v) for plane in planes for v in _lbp_histogram(plane))


def fine_texture(grey: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, tuple[float, ...]]:
    """(fine_contrast, fine LBP histogram) of the face centre at native resolution."""
    patch = _skin_patch(grey, box)
    if patch is None:
        return 0.0, tuple([0.0] * TEXTURE_BINS)
    residual = patch - cv2.GaussianBlur(patch, (0, 0), FINE_DETAIL_SIGMA)
    contrast = float(np.log(np.median(np.abs(residual)) + FINE_FLOOR))
    return contrast, tuple(float(v) for v in _lbp_histogram(patch.astype(np.uint8)))


GREY_CHROMA = 2.5  # mean |Cr| + |Cb| deviation of the face below this: a greyscale frame


def is_greyscale(bgr: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    """Greyscale capture (IR or monochrome camera, grey archive): the colour cues are void."""
    face = _region(bgr, box, 1.0)
    if face.size == 0:
        return False
    ycc = cv2.cvtColor(face, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    return float(np.mean(np.abs(ycc[..., 1] - 128) + np.abs(ycc[..., 2] - 128))) < GREY_CHROMA


def skin_chroma(bgr: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, float, float]:
    centre = _region(bgr, box, 0.6)
    if min(centre.shape[:2]) < 8:
        return 0.0, 0.0, 0.0
    ycc = cv2.cvtColor(centre, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    detail = ycc - cv2.GaussianBlur(ycc, (0, 0), 1.5)
    spread = detail.reshape(-1, 3).std(axis=0)
    fringes = float((spread[1] + spread[2]) / (spread[0] + 1.0))
    return float(ycc[..., 1].mean() - 128), float(ycc[..., 2].mean() - 128), fringes


def measure(bgr: np.ndarray, box: tuple[float, float, float, float]) -> ImageCues:
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cr, cb, fringes = skin_chroma(bgr, box)
    gamut_score, black, saturation, midtones = tone(bgr, box)
    fine_contrast, fine_bins = fine_texture(grey, box)
    red_difference = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)[..., 1])  # 0.1 ms at VGA
    return ImageCues(
        black_level=black,
        saturation=saturation,
        midtones=midtones,
        chroma_periodicity=periodicity(red_difference, box),
        texture=colour_texture(bgr, box),
        fine_contrast=fine_contrast,
        fine_texture=fine_bins,
        skin_cr=cr,
        skin_cb=cb,
        chroma_detail=fringes,
        periodicity=periodicity(grey, box),
        sharpness_loss=sharpness_loss(grey, box),
        gamut=gamut_score,
        glare=glare(bgr, box),
        frame_edges=frame_edges(grey, box),
    )
