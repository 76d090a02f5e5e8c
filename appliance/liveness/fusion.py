"""Fusion of the passive cues into one live score, and its calibration file.

Two channels must both accept. (1) The learned model alone, against a floor set at a small
bona fide rejection rate: it was trained on real prints and screens, so the fusion may never
out-vote it when it is sure (a tablet replay that the synthetic-trained fusion scored live
is exactly what it catches). (2) A quadratic logistic model over the standardised cue vector
(the two MiniFASNet logits and the image cues): small enough to read, and re-fitted per camera
by ``appliance liveness calibrate`` because every cue shifts with the camera (the fitting is
evaluation code, ``appliance.evaluation.pad_calibration``; this module only applies it). The
calibration file (JSON, no pickles) carries the weights, the decision threshold on the live
score, the operating point it was set at and where its data came from.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from appliance.durable_file import SHARED, write_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.liveness import grey_path
from appliance.liveness.image_cues import FINE_NAMES, TEXTURE_NAMES, ImageCues
from appliance.liveness.minifasnet import ModelScores

MODEL_FEATURES = ("minifasnet_v2", "minifasnet_v1se")
IMAGE_FEATURES = (tuple(name for name in ImageCues.__dataclass_fields__ if name not in ("texture", "fine_texture"))
                  + TEXTURE_NAMES + FINE_NAMES)
FEATURES = MODEL_FEATURES + IMAGE_FEATURES
PROBABILITY_FLOOR = 1e-4
FORMAT = 1


def _logit(p: float) -> float:
    p = min(max(p, PROBABILITY_FLOOR), 1 - PROBABILITY_FLOOR)
    return math.log(p / (1 - p))


MODEL_LIVE = "minifasnet_live"  # mean live probability of the two networks (the veto channel)


def cue_values(model: ModelScores, cues: ImageCues | None) -> dict[str, float]:
    """Every passive cue by name (model probabilities as logits); kept on the device."""
    values = {name: _logit(p) for name, p in zip(MODEL_FEATURES, model.per_model)}
    values[MODEL_LIVE] = model.live
    if cues is None:
        return values
    values.update(cues.as_dict())
    return values


def expand_features(standard: np.ndarray) -> np.ndarray:
    """The quadratic model's inputs: the standardised cues and their squares."""
    return np.concatenate([standard, standard**2], axis=-1)


@dataclass(frozen=True)
class Calibration:
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]  # for [standardised, standardised**2]
    bias: float
    threshold: float  # accept as live when live_score >= threshold ...
    model_floor: float  # ... and the model's own live probability >= model_floor
    operating_point: dict  # what the threshold was set at, on which data
    synthetic: bool  # fitted on synthetic attacks: recalibrate on the device camera
    # The same, fitted on greyscale frames (IR / monochrome cameras, grey archives): colour
    # cues are void there and the model, trained on colour, calls most grey faces spoofs.
    grey: Calibration | None = None

    def attack_logit(self, values: dict[str, float]) -> float:
        vector = np.array([values[name] for name in self.features], dtype=np.float64)
        standard = (vector - np.array(self.mean)) / np.array(self.scale)
        return float(expand_features(standard) @ np.array(self.weights) + self.bias)

    def live_score(self, values: dict[str, float]) -> float:
        """Probability-like live score in (0, 1); higher = more likely bona fide."""
        return float(1.0 / (1.0 + math.exp(min(50.0, self.attack_logit(values)))))

    def vetoed(self, values: dict[str, float]) -> bool:
        return values[MODEL_LIVE] < self.model_floor

    def live_scores(self, rows: np.ndarray) -> np.ndarray:
        standard = (rows - np.array(self.mean)) / np.array(self.scale)
        logits = expand_features(standard) @ np.array(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(np.minimum(50.0, logits)))

    def save(self, path: Path) -> None:
        data = {"format": FORMAT, **asdict(self)}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"), SHARED)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ApplianceError(
                ErrorCode.LIVENESS_UNCALIBRATED, f"{path}: run 'appliance liveness calibrate DIR'"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ApplianceError(ErrorCode.LIVENESS_UNCALIBRATED, f"{path}: {exc}") from None
        if data.pop("format", None) != FORMAT:
            raise ApplianceError(ErrorCode.LIVENESS_UNCALIBRATED, f"{path}: unknown format")
        return cls._from_dict(data, path)

    @classmethod
    def _from_dict(cls, data: dict, path: Path) -> Calibration:
        grey = data.pop("grey", None)
        try:
            calibration = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except TypeError as exc:
            raise ApplianceError(ErrorCode.LIVENESS_UNCALIBRATED, f"{path}: {exc}") from None
        unknown = set(calibration.features) - set(FEATURES) - set(grey_path.FEATURES)
        if unknown:
            raise ApplianceError(ErrorCode.LIVENESS_UNCALIBRATED, f"{path}: unknown cues {sorted(unknown)}")
        if grey is not None:
            calibration = replace(calibration, grey=cls._from_dict(grey, path))
        return calibration
