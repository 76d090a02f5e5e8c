"""Wider SYNTHETIC attack species (issue 15): attacks that differ in kind, not only in parameters.

Each species is one small function ``(bgr, rng, held_out) -> float media`` (the instrument as
the camera's scene would hold it; ``synthetic.recapture`` then places and photographs it).
Every species draws its parameters from a *calibration* range or, for ``held_out=True``, from
a disjoint *held-out* range (other pixel pitches, other dot sizes, other bends) that no
calibration ever sees. ``synthetic_set.write_set`` gives held-out parameters to the identities
``is_held_out`` picks (seeded by ``HELD_OUT_SALT``), the same identities ``pad_loso`` keeps
out of calibration. Simulated artefacts, not real instruments: see docs/liveness.md.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from appliance.vision.alignment import similarity_transform

HELD_OUT_SALT = b"pad-heldout-v1"  # names the identity split; change it and every held-out figure changes
HELD_OUT_SHARE = 2  # one identity in HELD_OUT_SHARE is held out
LOW_LIGHT_GAIN = (0.12, 0.3)  # scene light as a fraction of normal; the sensor gain brings it back

Range = tuple[float, float]
Eyes = tuple[tuple[float, float], tuple[float, float]]  # the two eye centres (x, y) in the source image


def is_held_out(identity: str) -> bool:
    """Whether ``identity`` belongs to the held-out part (never calibrated on), by a salted CRC."""
    return zlib.crc32(HELD_OUT_SALT + identity.encode("utf-8")) % HELD_OUT_SHARE == 0


def _draw(rng: np.random.Generator, seen: Range, unseen: Range, held_out: bool) -> float:
    low, high = unseen if held_out else seen
    return float(rng.uniform(low, high))


def _lattice(bgr: np.ndarray, mask_cell: np.ndarray, pitch: int, blur: float) -> np.ndarray:
    """Each pixel drawn as ``mask_cell`` (pitch x pitch x 3 sub-pixel weights), then the optics blur."""
    height, width = bgr.shape[:2]
    big = cv2.resize(bgr, (width * pitch, height * pitch), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    reps = (-(-big.shape[0] // mask_cell.shape[0]), -(-big.shape[1] // mask_cell.shape[1]), 1)
    mask = np.tile(mask_cell, reps)[:big.shape[0], :big.shape[1]]
    lit = cv2.GaussianBlur(big * mask, (0, 0), blur) / (mask.mean() + 1e-6)
    return cv2.resize(lit, (width, height), interpolation=cv2.INTER_AREA)


def _stripe_cell(pitch: int, floor: float) -> np.ndarray:
    cell = np.full((pitch, pitch, 3), floor, np.float32)
    third = max(1, pitch // 3)
    for index, channel in enumerate((2, 1, 0)):  # R, G, B left to right (BGR arrays)
        cell[:, index * third:(index + 1) * third, channel] = 1.0
    cell[-1, :, :] *= 0.7  # row gap
    return cell


def _pentile_cell(pitch: int, floor: float) -> np.ndarray:
    """Diamond PenTile (phones): green on every pixel, red and blue alternating on a checkerboard."""
    cell = np.full((2 * pitch, 2 * pitch, 3), floor, np.float32)
    half = pitch // 2
    cell[half::pitch, half::pitch, 1] = 1.0
    cell[:pitch, :pitch, 2] = cell[pitch:, pitch:, 2] = 1.0  # red
    cell[:pitch, pitch:, 0] = cell[pitch:, :pitch, 0] = 1.0  # blue
    return cell


def _banding(media: np.ndarray, rng: np.random.Generator, depth: float) -> np.ndarray:
    """Refresh banding: the rolling shutter catches the screen mid-refresh as slow horizontal bands."""
    rows = np.arange(media.shape[0], dtype=np.float32)
    period = rng.uniform(0.2, 0.6) * media.shape[0]
    band = 1 - depth * (0.5 + 0.5 * np.sin(2 * np.pi * rows / period + rng.uniform(0, 2 * np.pi)))
    return media * band[:, None, None]


def _screen_light(media: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gamma = rng.uniform(0.7, 0.9)
    lit = 255 * (np.clip(media, 0, 255) / 255) ** gamma
    lit *= np.array([rng.uniform(1.0, 1.1), 1.0, rng.uniform(0.85, 0.97)], dtype=np.float32)
    return lit + rng.uniform(8, 25)


def _border(media: np.ndarray, rng: np.random.Generator, share: Range, colour: Range) -> np.ndarray:
    width = int(rng.uniform(*share) * max(media.shape[:2]))
    return cv2.copyMakeBorder(media, width, width, width, width, cv2.BORDER_CONSTANT,
                              value=[float(v) for v in rng.uniform(*colour, 3)])


def _bend(media: np.ndarray, strength: float) -> np.ndarray:
    """A sheet curved round a vertical axis: its sides turn away (compressed, darker)."""
    height, width = media.shape[:2]
    u = np.linspace(-1, 1, width, dtype=np.float32)
    reach = np.sin(strength)
    source_x = (np.arcsin(np.clip(u * reach, -1, 1)) / strength + 1) * (width - 1) / 2
    map_x = np.tile(source_x, (height, 1)).astype(np.float32)
    map_y = np.tile(np.arange(height, dtype=np.float32)[:, None], (1, width))
    shade = 0.7 + 0.3 * np.cos(u * strength)
    return cv2.remap(media.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR) * shade[None, :, None]


def _fingers(media: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A hand holding the sheet: two or three skin-toned finger tips over the bottom or a side edge."""
    out = media.copy()
    height, width = out.shape[:2]
    skin = np.array([rng.uniform(90, 150), rng.uniform(120, 175), rng.uniform(170, 230)], np.float32)  # BGR
    side = int(rng.integers(3))  # 0 bottom, 1 left, 2 right
    for _ in range(int(rng.integers(2, 4))):
        along = rng.uniform(0.15, 0.85)
        radius = int(rng.uniform(0.05, 0.08) * min(height, width))
        centre = {0: (int(along * width), height), 1: (0, int(along * height)), 2: (width, int(along * height))}[side]
        axes = (radius, int(radius * 1.8)) if side == 0 else (int(radius * 1.8), radius)
        cv2.ellipse(out, centre, axes, 0, 0, 360, [float(v) for v in skin], -1)
    return cv2.GaussianBlur(out, (0, 0), 0.8)


def _ordered_dots(bgr: np.ndarray, cell: int) -> np.ndarray:
    """A low-DPI print: coarse ordered (Bayer) dither per ink channel on a ``cell``-pixel grid."""
    bayer = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], np.float32) / 16
    height, width = bgr.shape[:2]
    small = cv2.resize(bgr, (max(8, width // cell), max(8, height // cell)), interpolation=cv2.INTER_AREA)
    threshold = np.tile(bayer, (small.shape[0] // 4 + 1, small.shape[1] // 4 + 1))[:small.shape[0], :small.shape[1]]
    dots = (small.astype(np.float32) / 255 > threshold[..., None]).astype(np.float32) * 255
    mixed = 0.6 * dots + 0.4 * small
    return cv2.resize(mixed, (width, height), interpolation=cv2.INTER_NEAREST)


def _paper_tone(media: np.ndarray, rng: np.random.Generator, black: Range, saturation: Range) -> np.ndarray:
    low, white = rng.uniform(*black), rng.uniform(225, 250)
    toned = low + media.astype(np.float32) * (white - low) / 255
    grey = toned.mean(axis=2, keepdims=True)
    return grey + (toned - grey) * rng.uniform(*saturation)


def screen_pentile(bgr: np.ndarray, rng: np.random.Generator, held_out: bool) -> np.ndarray:
    """A phone (diamond PenTile OLED, small) with a dark bezel and refresh banding."""
    pitch = int(round(_draw(rng, (2, 3.4), (3.6, 5.4), held_out)))
    media = _lattice(bgr, _pentile_cell(pitch, rng.uniform(0.3, 0.6)), pitch, rng.uniform(0.6, 1.2))
    media = _banding(_screen_light(media, rng), rng, _draw(rng, (0.05, 0.15), (0.15, 0.3), held_out))
    return _border(media, rng, (0.04, 0.1), (3, 25))


def screen_monitor(bgr: np.ndarray, rng: np.random.Generator, held_out: bool) -> np.ndarray:
    """A large monitor or tablet (RGB stripes, coarse pitch): strong moire, thin bezel, banding."""
    pitch = 3 * int(round(_draw(rng, (1, 2.4), (2.6, 3.4), held_out)))
    media = _lattice(bgr, _stripe_cell(pitch, rng.uniform(0.4, 0.7)), pitch, rng.uniform(0.5, 1.0))
    media = _banding(_screen_light(media, rng), rng, _draw(rng, (0.02, 0.08), (0.1, 0.2), held_out))
    return _border(media, rng, (0.01, 0.04), (10, 40))


def print_hd_glossy(bgr: np.ndarray, rng: np.random.Generator, held_out: bool) -> np.ndarray:
    """A high-definition glossy photo print, flat (the recapture adds the glossy glare)."""
    media = _paper_tone(bgr, rng, (6, 20), (0.85, 1.0))
    grain = cv2.GaussianBlur(rng.normal(0, 1, bgr.shape[:2]).astype(np.float32), (0, 0), 0.6)
    media = media * (1 + _draw(rng, (0.004, 0.012), (0.014, 0.025), held_out) * grain[..., None])
    return _border(media, rng, (0.0, 0.05), (230, 252))


def print_lowdpi_matte(bgr: np.ndarray, rng: np.random.Generator, held_out: bool) -> np.ndarray:
    """A low-DPI matte office print, curved round a vertical axis."""
    cell = int(round(_draw(rng, (2, 3.4), (3.6, 5.4), held_out)))
    media = _paper_tone(_ordered_dots(bgr, cell), rng, (30, 60), (0.6, 0.85))
    return _bend(media, _draw(rng, (0.3, 0.8), (0.9, 1.3), held_out))


def print_handheld(bgr: np.ndarray, rng: np.random.Generator, held_out: bool) -> np.ndarray:
    """A photo print held by hand: fingers on an edge, a slight bend."""
    media = _paper_tone(bgr, rng, (12, 35), (0.75, 0.95))
    media = _bend(media, _draw(rng, (0.1, 0.4), (0.5, 0.8), held_out))
    return _fingers(_border(media, rng, (0.02, 0.06), (225, 250)), rng)


@dataclass(frozen=True)
class Holes:
    """What a cut-out needs of its source photo: where the printed face's eyes are, and what
    shows through the holes - the wearer's face placed so that their eyes are behind the
    print's (``behind_holes``); None: dark, flat skin."""

    eyes: Eyes
    behind: np.ndarray | None = None


def behind_holes(wearer: np.ndarray, wearer_eyes: Eyes, eyes: Eyes, shape: tuple[int, ...]) -> np.ndarray:
    """The wearer's photo moved, turned and scaled (a similarity from eye to eye) so that their
    eyes land on ``eyes``, in a frame of ``shape``: what a person holding the print to their
    face shows through its holes."""
    matrix = similarity_transform(np.array(wearer_eyes), np.array(eyes))  # exact for two points
    return cv2.warpAffine(wearer, matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT).astype(np.float32)


def cutout_eyes(bgr: np.ndarray, rng: np.random.Generator, held_out: bool, holes: Holes | None = None) -> np.ndarray:
    """A printed face with the eyes cut out, held to a person's face: the holes show the wearer's
    eyes (``holes.behind``; without it dark, flat skin). ``holes.eyes``: where the printed face's
    eyes are (the detector's five points: ``write_set`` locates them); without ``holes``, those
    of a centred portrait, which in-the-wild photos are not (on celeba-dev those positions
    missed the eyes of most faces). The held-out range is the holes' size, relative to the
    distance between the eyes."""
    media = _paper_tone(bgr, rng, (15, 40), (0.7, 0.95))
    height, width = media.shape[:2]
    if holes is None:
        eye_y = _draw(rng, (0.36, 0.42), (0.43, 0.47), held_out) * height
        holes = Holes(((0.35 * width, eye_y), (0.65 * width, eye_y)))
    (lx, ly), (rx, ry) = holes.eyes
    span = max(1.0, float(np.hypot(rx - lx, ry - ly)))
    half_width = _draw(rng, (0.28, 0.38), (0.38, 0.48), held_out) * span
    radius = (max(1, int(half_width)), max(1, int(half_width * rng.uniform(0.45, 0.6))))
    angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))  # the holes follow the eye line
    cut = np.zeros((height, width), np.uint8)
    for x, y in holes.eyes:
        cv2.ellipse(cut, (int(round(x)), int(round(y))), radius, angle, 0, 360, 255, -1)
    hole = cut > 0
    if holes.behind is None:
        media[hole] = [rng.uniform(40, 90), rng.uniform(55, 110), rng.uniform(80, 150)]
    else:
        media[hole] = holes.behind[hole]
    return media


def low_light(bgr: np.ndarray, rng: np.random.Generator, held_out: bool) -> np.ndarray:
    """A photo print in a dim entrance (the darkness itself is ``low_light_frame``, after recapture)."""
    return _paper_tone(bgr, rng, (10, 30), (0.8, 1.0))


def low_light_frame(frame: np.ndarray, rng: np.random.Generator, held_out: bool) -> np.ndarray:
    """The camera in the dark: little light, then gain (noise amplified with the signal)."""
    gain = _draw(rng, LOW_LIGHT_GAIN, (0.06, 0.11), held_out)
    dark = frame.astype(np.float32) * gain + rng.normal(0, 1.5, frame.shape).astype(np.float32)
    return np.clip(dark / gain, 0, 255).astype(np.uint8)


WIDE_SPECIES: dict[str, Callable[[np.ndarray, np.random.Generator, bool], np.ndarray]] = {
    "screen_pentile": screen_pentile, "screen_monitor": screen_monitor, "print_hd_glossy": print_hd_glossy,
    "print_lowdpi_matte": print_lowdpi_matte, "print_handheld": print_handheld, "cutout_eyes": cutout_eyes,
    "low_light": low_light,
}
GLOSSY = ("screen_pentile", "screen_monitor", "print_hd_glossy")  # glare in the recapture
AFTER_CAPTURE = {"low_light": low_light_frame}  # applied to the recaptured frame
