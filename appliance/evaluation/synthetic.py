"""Synthetic presentation attacks made from real bona fide photos (seeded, deterministic).

No public spoof dataset can be had here, so attacks are simulated: the bona fide image is
turned into an artefact (a print, a screen, a replayed video frame) and "recaptured" by a
simulated camera. Every report built on these says ``"synthetic": true``. A detector that
scores well here has learned to catch *these* artefacts; that says little about real prints
and screens, whose capture must be measured with real attacks in the same folder layout
(see docs/liveness.md).

Species:
  print   halftone dots, paper texture, ink gamut (lifted blacks, paper white), warm cast,
          optional white paper margin, flat-plane tilt;
  screen  RGB sub-pixel grid resampled by the camera (moire), gamma and blue white point,
          specular glare, optional dark bezel;
  replay  a frame of a live sequence shown on a screen: video down-scaling and block
          compression before the screen path; as bursts (``frames`` > 0) the identity's
          photos are replayed in turn, so expression changes are replayed too.
  photo   (unseen) a high-definition photo print: continuous tone, no halftone, glossy glare.
  mask    (unseen) a paper mask: the printed face cut out as an oval, bent round a cylinder
          and worn by another person (their hair, neck and background are real).
  wide    (``synthetic_species``) screens of other lattices, other prints, cut-outs, low light;
          each with a held-out parameter range for the identities ``is_held_out`` picks.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.evaluation.synthetic_species import AFTER_CAPTURE, GLOSSY, WIDE_SPECIES, Holes, cutout_eyes

SPECIES = ("print", "screen", "replay")  # simulated for calibration and evaluation
# Held back from calibration, for unseen-species evaluation (how a fusion fitted on the
# species above copes with attacks it has never seen):
UNSEEN_SPECIES = ("photo", "mask")
WIDE = tuple(WIDE_SPECIES)  # synthetic_species: differ in kind, each with a held-out parameter range
ALL_SPECIES = SPECIES + UNSEEN_SPECIES + WIDE
JPEG_QUALITY = (78, 95)  # the simulated camera's encoder


@dataclass(frozen=True)
class Placement:
    """Where the artefact sits in the camera frame: scale, centre offset, tilt (perspective)."""

    scale: float
    offset: tuple[float, float]  # fraction of the frame size
    tilt: tuple[float, float]  # perspective factors (x, y)
    rotation: float  # degrees


def _halftone(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Amplitude-modulated dots per ink channel, each screen at its own angle."""
    height, width = rgb.shape[:2]
    period = rng.uniform(2.2, 4.0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty_like(rgb, dtype=np.float32)
    for channel, angle in enumerate(np.deg2rad([15.0, 75.0, 45.0]) + rng.uniform(0, 0.3)):
        u = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
        v = (-xx * np.sin(angle) + yy * np.cos(angle)) * 2 * np.pi / period
        screen = (np.cos(u) + np.cos(v) + 2) / 4  # 0..1 dot profile
        level = rgb[..., channel].astype(np.float32) / 255
        out[..., channel] = np.clip((level - screen) * 4 + 0.5, 0, 1)
    mixed = 0.55 * out * 255 + 0.45 * rgb.astype(np.float32)  # ink spread softens the dots
    return cv2.GaussianBlur(mixed, (0, 0), 0.6)


def _paper(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = rgb.shape[:2]
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), rng.uniform(0.8, 2.0))
    fibres /= fibres.std() + 1e-6
    black, white = rng.uniform(25, 55), rng.uniform(215, 245)
    toned = black + rgb.astype(np.float32) * (white - black) / 255
    grey = toned.mean(axis=2, keepdims=True)
    toned = grey + (toned - grey) * rng.uniform(0.65, 0.9)  # ink gamut: less saturation
    toned *= np.array([rng.uniform(0.88, 0.97), rng.uniform(0.95, 1.0), 1.0], dtype=np.float32)  # warm (BGR)
    return toned * (1 + rng.uniform(0.02, 0.05) * fibres[..., None])


def _photo_paper(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photographic paper: continuous tone, deep blacks, slight gamut loss, fine grain."""
    black, white = rng.uniform(8, 22), rng.uniform(235, 252)
    toned = black + bgr.astype(np.float32) * (white - black) / 255
    grey = toned.mean(axis=2, keepdims=True)
    toned = grey + (toned - grey) * rng.uniform(0.85, 1.0)
    grain = cv2.GaussianBlur(rng.normal(0, 1, bgr.shape[:2]).astype(np.float32), (0, 0), 0.7)
    return toned * (1 + rng.uniform(0.005, 0.015) * grain[..., None])


def _subpixels(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pixel as R, G, B stripes with dark gaps, the structure that aliases into moire.

    The camera's optics blur most of it away; what survives resampling is a faint beat.
    """
    factor = 3
    big = cv2.resize(bgr, (bgr.shape[1] * factor, bgr.shape[0] * factor),
                     interpolation=cv2.INTER_NEAREST).astype(np.float32)
    floor = rng.uniform(0.55, 0.8)
    mask = np.full((bgr.shape[0] * factor, bgr.shape[1] * factor, 3), floor, np.float32)
    for index, channel in enumerate((2, 1, 0)):  # R, G, B stripes left to right (BGR arrays)
        mask[:, index::factor, channel] = 1.0
    mask[::factor, :, :] *= rng.uniform(0.75, 0.9)  # row gap
    optics = cv2.GaussianBlur(big * mask, (0, 0), rng.uniform(0.8, 1.6))
    return optics / (mask.mean() + 1e-6)


def _screen_tone(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gamma = rng.uniform(0.7, 0.9)
    toned = 255 * (bgr.astype(np.float32) / 255) ** gamma
    toned *= np.array([rng.uniform(1.0, 1.1), 1.0, rng.uniform(0.85, 0.97)], dtype=np.float32)  # blue white point
    return np.clip(toned + rng.uniform(8, 25), 0, 255)  # backlight lifts the blacks


def _glare(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = canvas.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
    sx, sy = rng.uniform(0.08, 0.3) * width, rng.uniform(0.05, 0.2) * height
    blob = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
    return canvas + rng.uniform(60, 160) * blob[..., None]


def _video_frame(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = bgr.shape[:2]
    factor = rng.uniform(0.35, 0.6)
    small = cv2.resize(bgr, (max(16, int(width * factor)), max(16, int(height * factor))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(25, 50))])
    return cv2.resize(cv2.imdecode(data, cv2.IMREAD_COLOR), (width, height), interpolation=cv2.INTER_LINEAR)


def random_placement(rng: np.random.Generator) -> Placement:
    return Placement(
        scale=float(rng.uniform(0.8, 1.25)),
        offset=(float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.06, 0.06))),
        tilt=(float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.12, 0.12))),
        rotation=float(rng.uniform(-8, 8)),
    )


def _homography(size: tuple[int, int], media: tuple[int, int], place: Placement) -> np.ndarray:
    width, height = size
    mw, mh = media
    corners = np.array([[0, 0], [mw, 0], [mw, mh], [0, mh]], np.float32) - [mw / 2, mh / 2]
    fit = min(width / mw, height / mh) * place.scale
    tx, ty = place.tilt
    # perspective: one side of the plane nearer the camera than the other
    depth = 1 + tx * corners[:, 0] / (mw / 2) + ty * corners[:, 1] / (mh / 2)
    angle = np.deg2rad(place.rotation)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    target = (corners * fit / depth[:, None]) @ rot.T
    target += [width / 2 + place.offset[0] * width, height / 2 + place.offset[1] * height]
    source = corners + [mw / 2, mh / 2]
    return cv2.getPerspectiveTransform(source.astype(np.float32), target.astype(np.float32))


def _scene(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A plain room-like background: a smooth gradient with mild texture."""
    width, height = size
    top, bottom = rng.uniform(60, 220, 3), rng.uniform(30, 200, 3)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    scene = top * (1 - ramp) + bottom * ramp
    scene = np.broadcast_to(scene, (height, width, 3)).copy()
    return scene + cv2.GaussianBlur(rng.normal(0, 12, (height, width, 3)).astype(np.float32), (0, 0), 3)


def _camera(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.3, 0.9))
    frame = frame + rng.normal(0, rng.uniform(1.5, 4.0), frame.shape).astype(np.float32)
    image = np.clip(frame, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*JPEG_QUALITY))])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def artefact(bgr: np.ndarray, species: str, rng: np.random.Generator, held_out: bool = False,
             holes: Holes | None = None) -> np.ndarray:
    """The presentation attack instrument as a float image: the print or the lit screen.
    ``holes``: the cut-out's, at the eyes of ``bgr`` (other species ignore it)."""
    if species == "cutout_eyes":
        return cutout_eyes(bgr, rng, held_out, holes)
    if species in WIDE_SPECIES:
        return WIDE_SPECIES[species](bgr, rng, held_out)
    if species == "print":
        media = _paper(_halftone(bgr, rng), rng)
        if rng.random() < 0.5:  # white paper margin
            margin = int(rng.uniform(0.03, 0.08) * max(bgr.shape[:2]))
            media = cv2.copyMakeBorder(media, margin, margin, margin, margin, cv2.BORDER_CONSTANT,
                                       value=[float(v) for v in rng.uniform(215, 245, 3)])
        return media
    if species == "photo":
        media = _photo_paper(bgr, rng)
        if rng.random() < 0.5:
            margin = int(rng.uniform(0.03, 0.08) * max(bgr.shape[:2]))
            media = cv2.copyMakeBorder(media, margin, margin, margin, margin, cv2.BORDER_CONSTANT,
                                       value=[float(v) for v in rng.uniform(225, 250, 3)])
        return media
    if species in ("screen", "replay"):
        source = _video_frame(bgr, rng) if species == "replay" else bgr
        media = _screen_tone(_subpixels(source, rng), rng)
        if rng.random() < 0.5:  # bezel
            bezel = int(rng.uniform(0.03, 0.08) * max(media.shape[:2]))
            media = cv2.copyMakeBorder(media, bezel, bezel, bezel, bezel, cv2.BORDER_CONSTANT,
                                       value=[float(v) for v in rng.uniform(5, 30, 3)])
        return media
    raise ValueError(f"unknown attack species {species!r}; known: {ALL_SPECIES} (mask: paper_mask)")


def recapture(media: np.ndarray, size: tuple[int, int], place: Placement, rng: np.random.Generator,
              species: str, background: np.ndarray | None = None) -> np.ndarray:
    """The artefact as the door camera would see it, one frame."""
    width, height = size
    matrix = _homography(size, (media.shape[1], media.shape[0]), place)
    warped = cv2.warpPerspective(media.astype(np.float32), matrix, size, flags=cv2.INTER_AREA)
    cover = cv2.warpPerspective(np.ones(media.shape[:2], np.float32), matrix, size, flags=cv2.INTER_LINEAR)
    scene = _scene(size, rng) if background is None else background
    frame = scene * (1 - cover[..., None]) + warped * cover[..., None]
    if species in ("screen", "replay", "photo") + GLOSSY and rng.random() < 0.6:
        frame = _glare(frame, rng)  # glass, or glossy photo paper
    return _camera(frame, rng)


Box = tuple[float, float, float, float]


def paper_mask(bgr: np.ndarray, face: Box, wearer: np.ndarray, wearer_face: Box, seed: int) -> np.ndarray:
    """The printed face of ``bgr`` cut out, bent round a cylinder, worn by ``wearer``."""
    rng = np.random.default_rng(seed)
    media = _paper(_halftone(bgr, rng), rng)
    x, y, w, h = face
    cx, cy, half_w, half_h = x + w / 2, y + h * 0.45, w * 0.62, h * 0.68
    x0, y0 = int(max(0, cx - half_w)), int(max(0, cy - half_h))
    x1, y1 = int(min(bgr.shape[1], cx + half_w)), int(min(bgr.shape[0], cy + half_h))
    cut = media[y0:y1, x0:x1]
    ch, cw = cut.shape[:2]
    # bend: the mask's sides turn away from the camera (compressed and darker towards the edge)
    u = np.linspace(-1, 1, cw, dtype=np.float32)
    source_x = (np.arcsin(np.clip(u * 0.97, -1, 1)) / np.arcsin(0.97) + 1) * (cw - 1) / 2
    map_x = np.tile(source_x, (ch, 1)).astype(np.float32)
    map_y = np.tile(np.arange(ch, dtype=np.float32)[:, None], (1, cw))
    bent = cv2.remap(cut, map_x, map_y, cv2.INTER_LINEAR) * (0.75 + 0.25 * np.sqrt(1 - u**2))[None, :, None]
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    alpha = (((xx - cw / 2) / (cw / 2)) ** 2 + ((yy - ch / 2) / (ch / 2)) ** 2 <= 1).astype(np.float32)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0)
    wx, wy, ww, wh = wearer_face
    scale = rng.uniform(1.05, 1.2) * max(ww / (2 * half_w), wh / (2 * half_h))
    size = (max(2, int(cw * scale)), max(2, int(ch * scale)))
    bent, alpha = cv2.resize(bent, size), cv2.resize(alpha, size)
    frame = wearer.astype(np.float32).copy()
    left, top = int(wx + ww / 2 - size[0] / 2), int(wy + wh * 0.45 - size[1] / 2)
    fx0, fy0 = max(0, left), max(0, top)
    fx1, fy1 = min(frame.shape[1], left + size[0]), min(frame.shape[0], top + size[1])
    if fx1 > fx0 and fy1 > fy0:
        patch = (slice(fy0 - top, fy1 - top), slice(fx0 - left, fx1 - left))
        a = alpha[patch][..., None]
        frame[fy0:fy1, fx0:fx1] = frame[fy0:fy1, fx0:fx1] * (1 - a) + bent[patch] * a
    return _camera(frame, rng)


def synthesize(bgr: np.ndarray, species: str, seed: int, held_out: bool = False,
               holes: Holes | None = None) -> np.ndarray:
    """One attack image of ``species`` made from the bona fide ``bgr`` (same frame size);
    ``held_out`` draws the wide species' parameters from their held-out range; ``holes``: a
    cut-out's (``artefact``)."""
    rng = np.random.default_rng(seed)
    media = artefact(bgr, species, rng, held_out, holes)
    size = (bgr.shape[1], bgr.shape[0])
    frame = recapture(media, size, random_placement(rng), rng, species)
    return _after_capture(frame, species, rng, held_out)


def _after_capture(frame: np.ndarray, species: str, rng: np.random.Generator, held_out: bool) -> np.ndarray:
    """What the species does to the captured frame itself (low light: the dark camera's gain)."""
    return AFTER_CAPTURE[species](frame, rng, held_out) if species in AFTER_CAPTURE else frame


def synthesize_sequence(bgr: np.ndarray | list[np.ndarray], species: str, seed: int,
                        frames: int = 8, held_out: bool = False, holes: Holes | None = None) -> list[np.ndarray]:
    """A short burst of the artefact moved by hand: every frame is a plane in a new pose.

    ``bgr`` may be a list of live frames (a replayed recording): frame i then shows
    ``bgr[i % len]`` on the screen, so expression changes (a blink) are replayed too.
    ``held_out``, ``holes`` (at the first frame's eyes) and what a species does after the capture
    (low light) as in ``synthesize``.
    """
    rng = np.random.default_rng(seed)
    sources = bgr if isinstance(bgr, list) else [bgr]
    height, width = sources[0].shape[:2]
    sources = [s if s.shape[:2] == (height, width) else cv2.resize(s, (width, height)) for s in sources]
    media = [artefact(s, species, np.random.default_rng([seed, i]), held_out, holes) for i, s in enumerate(sources)]
    size = (width, height)
    start, end = random_placement(rng), random_placement(rng)
    # a hand tilts the sheet or the phone through a wider range than a still capture shows
    swing = rng.uniform(0.15, 0.3) * rng.choice([-1, 1], size=2)
    start = Placement(start.scale, start.offset, tuple(-swing), start.rotation)
    end = Placement(end.scale, end.offset, tuple(swing), end.rotation)
    background = _scene(size, rng)
    sequence = []
    for index in range(frames):
        t = index / max(1, frames - 1)
        place = Placement(
            scale=start.scale + (end.scale - start.scale) * t * 0.3,
            offset=tuple(a + (b - a) * t * 0.5 for a, b in zip(start.offset, end.offset)),
            tilt=tuple(a + (b - a) * t for a, b in zip(start.tilt, end.tilt)),
            rotation=start.rotation + (end.rotation - start.rotation) * t,
        )
        frame = recapture(media[index % len(media)], size, place, rng, species, background)
        sequence.append(_after_capture(frame, species, rng, held_out))
    return sequence
