"""SYNTHETIC occlusion set and its evaluation: masks, sunglasses, eye bars and hands drawn on real faces.

Each occluder is drawn along the face's own MediaPipe landmarks and lit by the photo's own light
(the occluder's colour is scaled by the blurred brightness of the face under it), so it sits where
a real one would. Every set and report says ``"synthetic": true``: real masks, hands and glasses
vary far more (colours, prints, skin-toned cloth, tinted or thin-framed glasses, partial covers),
so these rates bound what the judgement catches, they do not promise it (docs/quality.md).

  mask        surgical or cloth mask over nose, mouth and chin: palette colour, pleats, weave noise
  sunglasses  two dark (or mirrored) lenses, frame, bridge and temple arms
  bar         a black bar over both eyes
  hand_mouth  a hand (palm and four fingers) in another identity's skin tone, fingers across the mouth
  hand_cheek  the same hand on a cheek, fingers up towards the temple (often over one eye)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from appliance.capture.images import read_image
from appliance.evaluation.datasets import scan_identities
from appliance.pipeline import FacePipeline
from appliance.vision.occlusion import OCCLUSION_CODES, OCCLUSION_MEASURES

HAND_PLACES = ("mouth", "cheek")
OCCLUDERS = ("mask", "sunglasses", "bar") + tuple(f"hand_{place}" for place in HAND_PLACES)
KINDS = ("clean",) + OCCLUDERS
EXPECTED_CODE = {"mask": "occluded_mouth", "sunglasses": "occluded_eyes", "bar": "occluded_eyes",
                 **{f"hand_{place}": "occluded_face" for place in HAND_PLACES}}
SYNTHETIC_MARKER = "SYNTHETIC.json"
# MediaPipe mesh indices (image-left first) used to place the occluders.
FACE_LOWER_OVAL = (93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323)
NOSE_BRIDGE = 195  # the mask's top edge rests here
EYE_CORNERS = ((33, 133), (263, 362))
FACE_SIDES = (234, 454)
MOUTH_POINTS = (61, 291, 13, 14)
CHEEKS = (50, 280)
# Mask colours (BGR): surgical blue, white, black, grey, navy, pink, sage.
MASK_COLOURS = ((215, 185, 140), (235, 235, 232), (32, 30, 30), (150, 150, 148), (90, 52, 40), (190, 170, 232),
                (150, 175, 150))
LENS_TINTS = ((22, 22, 22), (20, 35, 45), (25, 40, 25), (45, 30, 20))  # grey, brown, green, blue (BGR)
MIRROR_SHARE = 0.3  # share of sunglasses with mirrored lenses
HAND_OVER_MOUTH_SHARE = 0.6  # of hands drawn without a place; the rest go over a cheek
LIGHT_RANGE = (0.55, 1.35)  # clip of the photo's own light factor applied to drawn occluders


@dataclass(frozen=True)
class Item:
    identity: str
    path: Path
    kind: str
    image: np.ndarray


def _frame(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Face frame: origin between the eyes, unit x along the eye line, unit y down, inter-eye distance."""
    left, right = (mesh[list(pair), :2].mean(axis=0) for pair in EYE_CORNERS)
    ied = float(np.linalg.norm(right - left))
    ex = (right - left) / max(ied, 1e-6)
    ey = np.array([-ex[1], ex[0]])
    return (left + right) / 2, ex, ey, ied


def _light(bgr: np.ndarray, ied: float) -> np.ndarray:
    """Per-pixel light factor of the photo (blurred brightness over its median), to shade occluders."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    blurred = cv2.GaussianBlur(grey, (0, 0), max(1.0, 0.35 * ied))
    return np.clip(blurred / max(float(np.median(blurred)), 1.0), *LIGHT_RANGE)


def _paint(bgr: np.ndarray, alpha: np.ndarray, colour: np.ndarray, light: np.ndarray, ied: float) -> np.ndarray:
    """Blend ``colour`` (per pixel BGR) into ``bgr`` where ``alpha`` (0..255) is set, feathered edges."""
    soft = cv2.GaussianBlur(alpha.astype(np.float32) / 255.0, (0, 0), max(0.6, 0.015 * ied))[..., None]
    shaded = np.clip(colour * light[..., None], 0, 255)
    return np.clip(bgr * (1 - soft) + shaded * soft, 0, 255).astype(np.uint8)


def _noise(shape: tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    return rng.normal(0.0, sigma, shape).astype(np.float32)


def draw_mask(bgr: np.ndarray, mesh: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    centre, ex, ey, ied = _frame(mesh)
    oval = mesh[list(FACE_LOWER_OVAL), :2]
    middle = oval.mean(axis=0)
    oval = middle + (oval - middle) * rng.uniform(1.03, 1.08)  # the cloth stands off the cheeks and chin
    nose = mesh[NOSE_BRIDGE, :2] - ey * rng.uniform(0.0, 0.12) * ied
    polygon = np.vstack([oval, nose[None]]).astype(np.int32)
    alpha = np.zeros(bgr.shape[:2], np.uint8)
    cv2.fillPoly(alpha, [polygon], 255)
    base = np.array(MASK_COLOURS[int(rng.integers(len(MASK_COLOURS)))], np.float32)
    height, width = alpha.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    across = ((xx - centre[0]) * ex[0] + (yy - centre[1]) * ex[1]) / ied
    down = ((xx - centre[0]) * ey[0] + (yy - centre[1]) * ey[1]) / ied
    curve = 1.0 - 0.25 * np.clip(np.abs(across) - 0.3, 0, None)  # the mask turns away at the sides
    pleats = 1.0 - 0.12 * (np.cos(2 * np.pi * down * rng.uniform(2.5, 4.0)) > 0.75)
    weave = 1.0 + _noise(alpha.shape, rng, rng.uniform(0.01, 0.05))
    colour = base[None, None, :] * (curve * pleats * weave)[..., None]
    out = _paint(bgr.astype(np.float32), alpha, colour, _light(bgr, ied), ied)
    for side in FACE_SIDES:  # ear loops
        end = mesh[side, :2] - ey * 0.1 * ied
        start = oval[0] if side == FACE_SIDES[0] else oval[-1]
        cv2.line(out, tuple(int(v) for v in start), tuple(int(v) for v in end),
                 tuple(int(c) for c in base * 0.9), max(1, int(0.03 * ied)), cv2.LINE_AA)
    return out


def draw_sunglasses(bgr: np.ndarray, mesh: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    centre, ex, ey, ied = _frame(mesh)
    angle = math.degrees(math.atan2(ex[1], ex[0]))
    axes = (int(rng.uniform(0.38, 0.46) * ied), int(rng.uniform(0.27, 0.34) * ied))
    alpha = np.zeros(bgr.shape[:2], np.uint8)
    lenses = [mesh[list(pair), :2].mean(axis=0) + ey * 0.05 * ied for pair in EYE_CORNERS]
    for lens in lenses:
        cv2.ellipse(alpha, (int(lens[0]), int(lens[1])), axes, angle, 0, 360, 255, -1, cv2.LINE_AA)
    height, width = alpha.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    down = ((xx - centre[0]) * ey[0] + (yy - centre[1]) * ey[1]) / ied
    tint = np.array(LENS_TINTS[int(rng.integers(len(LENS_TINTS)))], np.float32)
    if rng.random() < MIRROR_SHARE:  # mirrored: a bright sky-to-ground gradient with a streak
        sky = np.array([rng.uniform(150, 230), rng.uniform(120, 200), rng.uniform(90, 160)], np.float32)
        blend = np.clip(0.5 - down * 2.0, 0, 1)[..., None]
        colour = tint[None, None] * (1 - blend) + sky[None, None] * blend
    else:
        colour = tint[None, None] * (1.0 + 0.6 * np.clip(down, -0.3, 0.3)[..., None] + 0.3)
    colour = colour * (1.0 + _noise(alpha.shape, rng, 0.02))[..., None]
    out = _paint(bgr.astype(np.float32), alpha, colour, np.ones(alpha.shape, np.float32), ied)
    frame_colour = tuple(int(v) for v in rng.uniform(5, 60, 3))
    thick = max(1, int(0.035 * ied))
    for lens in lenses:
        cv2.ellipse(out, (int(lens[0]), int(lens[1])), axes, angle, 0, 360, frame_colour, thick, cv2.LINE_AA)
    inner = [lens + ex * axes[0] * sign for lens, sign in zip(lenses, (1, -1))]
    cv2.line(out, *(tuple(int(v) for v in p - ey * 0.08 * ied) for p in inner), frame_colour, thick, cv2.LINE_AA)
    for lens, side, sign in zip(lenses, FACE_SIDES, (-1, 1)):
        start = lens + ex * axes[0] * sign
        cv2.line(out, tuple(int(v) for v in start), tuple(int(v) for v in mesh[side, :2]), frame_colour, thick,
                 cv2.LINE_AA)
    return out


def draw_bar(bgr: np.ndarray, mesh: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    centre, ex, ey, ied = _frame(mesh)
    half_length, half_height = rng.uniform(0.85, 1.05) * ied, rng.uniform(0.2, 0.28) * ied
    signs = ((-1, -1), (1, -1), (1, 1), (-1, 1))
    corners = [centre + ex * sx * half_length + ey * sy * half_height for sx, sy in signs]
    alpha = np.zeros(bgr.shape[:2], np.uint8)
    cv2.fillPoly(alpha, [np.array(corners, np.int32)], 255)
    colour = np.full((*alpha.shape, 3), rng.uniform(0, 25), np.float32)
    return _paint(bgr.astype(np.float32), alpha, colour, np.ones(alpha.shape, np.float32), ied)


def skin_tone(bgr: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Median BGR of the two cheeks: the donor colour of a drawn hand."""
    _, _, _, ied = _frame(mesh)
    disc = np.zeros(bgr.shape[:2], np.uint8)
    for index in CHEEKS:
        cv2.circle(disc, tuple(int(v) for v in mesh[index, :2]), max(2, int(0.12 * ied)), 255, -1)
    return np.median(bgr[disc > 0], axis=0).astype(np.float32)


def draw_hand(bgr: np.ndarray, mesh: np.ndarray, skin: np.ndarray, rng: np.random.Generator,
              place: str | None = None) -> np.ndarray:
    """A hand in ``skin`` tone over the mouth or a cheek (``place`` in HAND_PLACES; None: seeded draw)."""
    centre, ex, ey, ied = _frame(mesh)
    side = 1 if rng.random() < 0.5 else -1
    over_mouth = rng.random() < HAND_OVER_MOUTH_SHARE
    if place is not None:
        if place not in HAND_PLACES:
            raise ValueError(f"unknown hand place {place!r}; known: {HAND_PLACES}")
        over_mouth = place == "mouth"
    if over_mouth:  # fingers across the mouth, palm at the side of the chin
        mouth = mesh[list(MOUTH_POINTS), :2].mean(axis=0)
        palm = mouth + ex * side * 0.85 * ied + ey * 0.25 * ied
        point = -ex * side
        span = ey
    else:  # a palm on a cheek, fingers up to the temple
        palm = mesh[CHEEKS[0 if side < 0 else 1], :2] + ex * side * 0.2 * ied + ey * 0.35 * ied
        point = -ey * 0.9 + ex * side * -0.1
        point = point / np.linalg.norm(point)
        span = np.array([-point[1], point[0]])
    alpha = np.zeros(bgr.shape[:2], np.uint8)
    palm_axes = (int(0.5 * ied), int(0.42 * ied))
    angle = math.degrees(math.atan2(point[1], point[0]))
    cv2.ellipse(alpha, (int(palm[0]), int(palm[1])), palm_axes, angle, 0, 360, 255, -1, cv2.LINE_AA)
    finger_width = rng.uniform(0.19, 0.24) * ied
    gaps = np.zeros_like(alpha)
    for number, offset in enumerate((-1.5, -0.5, 0.5, 1.5)):
        base = palm + point * 0.25 * ied + span * offset * finger_width * 1.05
        length = ied * rng.uniform(0.9, 1.15) * (0.85 if number in (0, 3) else 1.0)
        tip = base + point * length
        cv2.line(alpha, tuple(int(v) for v in base), tuple(int(v) for v in tip), 255, int(finger_width), cv2.LINE_AA)
        edge = base + span * finger_width * 0.55
        cv2.line(gaps, tuple(int(v) for v in edge), tuple(int(v) for v in edge + point * length * 0.9), 255,
                 max(1, int(0.02 * ied)), cv2.LINE_AA)
    shade = 1.0 - 0.4 * (cv2.GaussianBlur(gaps.astype(np.float32), (0, 0), 1.0) / 255.0)
    texture = 1.0 + _noise(alpha.shape, rng, 0.02)
    tone = skin * rng.uniform(0.92, 1.08, 3)
    colour = tone[None, None, :] * (shade * texture)[..., None]
    return _paint(bgr.astype(np.float32), alpha, colour, _light(bgr, ied), ied)


def occlude(bgr: np.ndarray, mesh: np.ndarray, kind: str, seed: int, donor_skin: np.ndarray | None = None
            ) -> np.ndarray:
    """The photo with one drawn occluder (``kind`` in KINDS; "clean" returns it untouched); a grey
    photo (an infrared camera's) stays grey."""
    drawn = _draw(bgr, mesh, kind, np.random.default_rng(seed), donor_skin)
    if bgr.ndim == 3 and np.array_equal(bgr[..., 0], bgr[..., 1]) and np.array_equal(bgr[..., 1], bgr[..., 2]):
        drawn = cv2.cvtColor(cv2.cvtColor(drawn, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return drawn


def _draw(bgr: np.ndarray, mesh: np.ndarray, kind: str, rng: np.random.Generator,
          donor_skin: np.ndarray | None) -> np.ndarray:
    if kind == "clean":
        return bgr.copy()
    if kind == "mask":
        return draw_mask(bgr, mesh, rng)
    if kind == "sunglasses":
        return draw_sunglasses(bgr, mesh, rng)
    if kind == "bar":
        return draw_bar(bgr, mesh, rng)
    if kind.startswith("hand_"):
        if donor_skin is None:
            raise ValueError("a drawn hand needs a donor skin tone")
        return draw_hand(bgr, mesh, donor_skin, rng, place=kind.removeprefix("hand_"))
    raise ValueError(f"unknown occluder {kind!r}; known: {KINDS}")


def generate(source: str | Path, locate: Callable[[np.ndarray], np.ndarray | None], split: str = "all",
             per_identity: int = 2, seed: int = 0, max_identities: int | None = None) -> Iterator[Item]:
    """Every kind for up to ``per_identity`` seeded photos of each identity whose face ``locate`` finds
    (``locate``: BGR image -> 478-point mesh or None). A hand takes the skin tone of the latest
    located photo of another identity."""
    rng = np.random.default_rng(seed)
    by_identity: dict[str, list[Path]] = {}
    for sample in scan_identities(source, split=split):
        by_identity.setdefault(sample.identity, []).append(sample.path)
    donors: list[tuple[str, np.ndarray]] = []  # (identity, skin tone) of located photos, newest last
    for number, (identity, paths) in enumerate(sorted(by_identity.items())[:max_identities]):
        chosen = sorted(rng.choice(len(paths), size=min(per_identity, len(paths)), replace=False))
        for index in chosen:
            image = read_image(paths[index])
            mesh = locate(image)
            if mesh is None:
                continue
            item_seed = int(seed * 1_000_003 + number * 1_009 + index)
            donor_skin = next((skin for who, skin in reversed(donors) if who != identity), None)
            for kind_index, kind in enumerate(KINDS):
                if kind.startswith("hand_") and donor_skin is None:
                    continue
                yield Item(identity, paths[index], kind, occlude(image, mesh, kind, item_seed + kind_index,
                                                                  donor_skin))
            donors.append((identity, skin_tone(image, mesh)))


def write_item(out: Path, item: Item) -> Path:
    """``out/<kind>/<identity>/<photo>.png``: the generated set, for a look or another tool."""
    target = out / item.kind / item.identity / f"{item.path.stem}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), item.image)
    return target


def tally(rows: list[dict]) -> dict[str, dict]:
    """Per kind: how often the right reason, any occlusion reason, or no face at all came back.

    ``rows``: ``{"kind", "codes", "measures"}`` per image. Rates are over every image of the kind;
    a drawn occluder that hides the face from the detector counts in ``no_face_rate`` (refused, but
    with "step in front of the camera" rather than occlusion guidance)."""
    summary = {}
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        count = len(mine)
        occluded = sum(1 for r in mine if set(r["codes"]) & set(OCCLUSION_CODES))
        entry = {"images": count, "no_face_rate": sum("no_face" in r["codes"] for r in mine) / count,
                 "any_occlusion_rate": occluded / count}
        if kind == "clean":
            entry["false_occlusion_rate"] = entry.pop("any_occlusion_rate")
            for code in OCCLUSION_CODES:
                entry[f"{code}_rate"] = sum(code in r["codes"] for r in mine) / count
        else:
            entry["detection_rate"] = sum(EXPECTED_CODE[kind] in r["codes"] for r in mine) / count
        summary[kind] = entry
    return summary


def suggest_limits(rows: list[dict], clean_rate: float) -> dict[str, float]:
    """Per occlusion measure, the limit that flags ``clean_rate`` of the clean faces of ``rows``
    (the calibration split): the defaults of ``QualityProfile`` come from this on split a."""
    limits = {}
    for name in OCCLUSION_MEASURES:
        values = np.array([r["measures"].get(name, math.nan) for r in rows if r["kind"] == "clean"], float)
        values = values[~np.isnan(values)]
        if len(values):
            limits[f"max_{name}"] = round(float(np.quantile(values, 1.0 - clean_rate)), 3)
    return limits


def markdown(report: dict) -> str:
    """The report as a markdown table per split (docs/quality.md quotes it)."""
    lines = [f"SYNTHETIC occluders on `{report['source']}` (seed {report['seed']}, "
             f"{report['per_identity']} photos per identity, profile `{report['profile']}`).", ""]
    for split, summary in report["splits"].items():
        lines += [f"### split {split}", "", "| occluder | images | detection (right reason) | any occlusion reason "
                  "| no face found | false occlusion on clean |", "|---|---|---|---|---|---|"]
        for kind, entry in summary.items():
            if kind == "clean":
                lines.append(f"| clean (none) | {entry['images']} | - | - | {entry['no_face_rate']:.1%} "
                             f"| {entry['false_occlusion_rate']:.1%} |")
            else:
                lines.append(f"| {kind} | {entry['images']} | {entry['detection_rate']:.1%} "
                             f"| {entry['any_occlusion_rate']:.1%} | {entry['no_face_rate']:.1%} | - |")
        lines.append("")
    limits = ", ".join(f"{k} {v:g}" for k, v in report["limits"].items())
    suggested = ", ".join(f"{k} {v:g}" for k, v in report.get("suggested_limits", {}).items())
    lines += [f"Limits used: {limits}.", f"Limits split a suggests at {report['target_clean_rate']:.0%} "
              f"clean faces flagged: {suggested or 'n/a'}.", ""]
    return "\n".join(lines)


def run(pipeline: FacePipeline, source: str | Path, profile_name: str = "verification",
        splits: tuple[str, ...] = ("a", "b"), per_identity: int = 2, seed: int = 0,
        max_identities: int | None = None, images_out: Path | None = None,
        target_clean_rate: float = 0.02) -> dict:
    """Generate each split's set, judge every image through ``pipeline.analyze`` (the door's own path)
    and return the report; limits are suggested from the first split (calibrate on a, report on b)."""
    profile = getattr(pipeline.config, f"quality_{profile_name}")

    def locate(image: np.ndarray) -> np.ndarray | None:
        subject = pipeline.detect(image).subject
        return None if subject is None else subject.mesh

    per_split: dict[str, list[dict]] = {}
    for split in splits:
        rows = []
        for item in generate(source, locate, split, per_identity, seed, max_identities):
            if images_out is not None:
                write_item(images_out / split, item)
            quality = pipeline.analyze(item.image, profile).quality
            measures = {k: v for k, v in quality.measures.items() if k in OCCLUSION_MEASURES}
            rows.append({"identity": item.identity, "image": item.path.name, "kind": item.kind,
                         "codes": quality.codes, "measures": measures})
        per_split[split] = rows
    report = {"synthetic": True, "generator": __name__, "source": str(Path(source).resolve()), "seed": seed,
              "per_identity": per_identity, "profile": profile_name, "target_clean_rate": target_clean_rate,
              "limits": {f"max_{m}": float(getattr(profile, f"max_{m}")) for m in OCCLUSION_MEASURES},
              "splits": {split: tally(rows) for split, rows in per_split.items()},
              "suggested_limits": suggest_limits(per_split[splits[0]], target_clean_rate) if splits else {}}
    if images_out is not None:
        (images_out / SYNTHETIC_MARKER).write_text(json.dumps(
            {k: report[k] for k in ("synthetic", "generator", "source", "seed", "per_identity")}, indent=2) + "\n",
            encoding="utf-8")
    report["images"] = per_split
    return report
