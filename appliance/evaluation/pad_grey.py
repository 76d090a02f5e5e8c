"""Calibrate and measure the greyscale liveness path (issue 15) on grey bona fide of its own domain.

The grey fusion used to be fitted on grey copies of CelebA alone, and refused 21-25 % of Yale's
real grey faces. Here it is fitted on the grey copies of several PAD sets at once (for example
synthetic sets made from CelebA, Yale and AT&T/ORL: ``appliance liveness synth``), every frame
turned grey as a monochrome or NIR camera would deliver it. Identities are split by
``synthetic_species.is_held_out`` (the salted split the generator and ``pad_loso`` use): the
*calibration* identities fit the fusion and set the threshold, the *held-out* identities are only
measured, so every figure printed here is on faces the calibration never saw.

* ``calibrate``: fit on the calibration identities (every species), threshold where the
  out-of-fold BPCER of their bona fide meets the target (folds by identity), and rewrite only the
  ``grey`` section of the calibration file (``pad_calibration.merge_modes`` keeps the colour part).
* ``evaluate``: the held-out table with every species seen, and leave-one-species-out (the species
  left out is neither fitted nor used for the threshold), BPCER per source set.

Presentations the grey gates refuse (``grey_path.refusal``: too close, too dark) are counted as
refused: against BPCER for bona fide, as caught for attacks. ``python -m appliance.evaluation.pad_grey``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation import pad
from appliance.evaluation.pad_calibration import fit, load_existing, merge_modes
from appliance.evaluation.synthetic_species import HELD_OUT_SALT, is_held_out
from appliance.liveness import grey_path
from appliance.liveness.fusion import Calibration

BPCER_TARGET = 0.05  # the grey operating point: 5 % of calibration bona fide refused (out of fold)
FOLDS = 3  # identity folds for the out-of-fold threshold


@dataclass(frozen=True)
class GreyItem:
    source: str  # which set (its folder name): BPCER is reported per source
    label: str  # bona_fide or the attack species
    identity: str
    held_out: bool
    values: dict[str, float] | None  # median cue values over the frames with a face; None: no face


def identity_of(name: str) -> str:
    return name.split("__")[0] if "__" in name else name


def score_sets(pipeline, checker, sets: list[str]) -> list[GreyItem]:
    """The grey cue values of every item of ``sets`` (greyscale copies, one row per presentation)."""
    out = []
    for root in sets:
        source = Path(root).name
        for item in pad.scan(root):
            frames = [pad.to_grey(f) for f in pad.load_frames(item, checker.config.burst_frames)]
            rows = []
            for frame in frames:
                face = pipeline.detect(frame).subject
                if face is not None:
                    rows.append({**checker.frame_cues(frame, face).values, **grey_path.measure(frame, face.box)})
            values = {k: float(np.median([r[k] for r in rows])) for k in rows[0]} if rows else None
            identity = identity_of(item.path.name)
            out.append(GreyItem(source, item.label, f"{source}:{identity}", is_held_out(identity), values))
    return out


def save_rows(items: list[GreyItem], path: Path) -> None:
    path.write_text(json.dumps([vars(i) for i in items]) + "\n", encoding="utf-8")


def load_rows(path: Path) -> list[GreyItem]:
    return [GreyItem(**row) for row in json.loads(path.read_text(encoding="utf-8"))]


@dataclass(frozen=True)
class _Rows:
    matrix: np.ndarray  # grey_path.FEATURES per presentation with a face
    labels: np.ndarray
    sources: np.ndarray
    held: np.ndarray  # held-out identity: measured only
    refusals: np.ndarray  # grey_path.refusal per presentation ("" when judged)
    folds: np.ndarray  # identity fold of the out-of-fold threshold

    @property
    def gated(self) -> np.ndarray:
        return self.refusals != ""

    @property
    def too_close(self) -> np.ndarray:
        return self.refusals == grey_path.REASON_TOO_CLOSE

    @property
    def is_attack(self) -> np.ndarray:
        return (self.labels != pad.BONA_FIDE).astype(float)


def _arrays(items: list[GreyItem], context_gate: bool = True) -> _Rows:
    faced = [i for i in items if i.values is not None]
    refusals = [grey_path.refusal(i.values if context_gate else {**i.values, grey_path.CONTEXT: np.inf})
                for i in faced]
    return _Rows(np.array([[i.values[name] for name in grey_path.FEATURES] for i in faced]),
                 np.array([str(i.label) for i in faced]), np.array([str(i.source) for i in faced]),
                 np.array([i.held_out for i in faced], dtype=bool), np.array([r or "" for r in refusals]),
                 np.array([zlib.crc32(i.identity.encode("utf-8")) % FOLDS for i in faced]))


def _calibration(matrix: np.ndarray, is_attack: np.ndarray, threshold: float = 0.5, point: dict | None = None,
                 synthetic: bool = True) -> Calibration:
    mean, scale, weights, bias = fit(matrix, is_attack)
    return Calibration(grey_path.FEATURES, tuple(map(float, mean)), tuple(map(float, scale)),
                       tuple(map(float, weights)), float(bias), float(threshold), 0.0, point or {}, synthetic)


def fit_threshold(matrix: np.ndarray, is_attack: np.ndarray, folds: np.ndarray,
                  bpcer: float) -> tuple[Calibration, float]:
    """The fusion fitted on all rows, and the threshold where the out-of-fold BPCER is ``bpcer``
    (each identity fold scored by a fusion fitted on the other folds: the fit's own bona fide
    score too well, which showed as a doubled BPCER on new identities in ``pad_loso``)."""
    held_out = np.full(len(matrix), np.nan)
    for fold in np.unique(folds):
        inside = folds == fold
        if inside.all() or len(np.unique(is_attack[~inside])) < 2:
            continue
        held_out[inside] = _calibration(matrix[~inside], is_attack[~inside]).live_scores(matrix[inside])
    bona = held_out[(is_attack == 0) & np.isfinite(held_out)]
    if not len(bona):
        raise ApplianceError(ErrorCode.DATASET_INVALID, "out-of-fold threshold needs bona fide in two identity folds")
    return _calibration(matrix, is_attack), float(np.quantile(bona, bpcer))


def _rates(accepted: np.ndarray, rows: _Rows) -> dict:
    """Held-out rates. Bona fide refused by a gate count against BPCER; attacks refused as too close
    were not judged and are left out of APCER (counted apart), those too dark count as caught."""
    labels, sources, held = rows.labels, rows.sources, rows.held
    species = sorted(set(labels) - {pad.BONA_FIDE})
    judged = {s: held & (labels == s) & ~rows.too_close for s in species}
    bona = held & (labels == pad.BONA_FIDE)
    names = sorted(set(sources[bona]))
    return {"apcer": {s: float(np.mean(accepted[m])) for s, m in judged.items() if m.any()},
            "attacks_held_out": {s: int(np.count_nonzero(m)) for s, m in judged.items()},
            "attacks_too_close": {s: int(np.count_nonzero(held & (labels == s) & rows.too_close)) for s in species},
            "bpcer": {s: float(1 - np.mean(accepted[bona & (sources == s)])) for s in names},
            "bona_fide_gated": {s: float(np.mean(rows.gated[bona & (sources == s)])) for s in names},
            "bona_fide_held_out": {s: int(np.count_nonzero(bona & (sources == s))) for s in names}}


def _fit_and_rate(rows: _Rows, fitting: np.ndarray, bpcer: float) -> tuple[Calibration, float, dict]:
    model, threshold = fit_threshold(rows.matrix[fitting], rows.is_attack[fitting], rows.folds[fitting], bpcer)
    accepted = (model.live_scores(rows.matrix) >= threshold) & ~rows.gated
    return model, threshold, _rates(accepted, rows)


def calibrate(items: list[GreyItem], bpcer: float = BPCER_TARGET, synthetic: bool = True,
              sources: str = "", context_gate: bool = True) -> tuple[Calibration, dict]:
    """The grey calibration (calibration identities, every species) and its held-out rates."""
    rows = _arrays(items, context_gate)
    fitting = ~rows.held & ~rows.gated
    model, threshold, rates = _fit_and_rate(rows, fitting, bpcer)
    point = {"target_bpcer_out_of_fold": bpcer, "folds": FOLDS, "dataset": sources, "held_out_salt":
             HELD_OUT_SALT.decode(), "bona_fide": int(np.count_nonzero(fitting & (rows.is_attack == 0))),
             "attacks": {s: int(np.count_nonzero(fitting & (rows.labels == s)))
                         for s in sorted(set(rows.labels) - {pad.BONA_FIDE})},
             "held_out": rates, "gates": {"min_context": grey_path.MIN_CONTEXT, "max_noise": grey_path.MAX_NOISE},
             "model_logits": "not used in grey (no veto)", "date": dt.date.today().isoformat(), "fusion": "fitted"}
    calibration = Calibration(model.features, model.mean, model.scale, model.weights, model.bias, threshold, 0.0,
                              point, synthetic)
    return calibration, rates


def leave_one_out(items: list[GreyItem], bpcer: float = BPCER_TARGET, context_gate: bool = True) -> dict:
    """Per left-out species S: fitted and thresholded without S, measured on held-out identities."""
    rows = _arrays(items, context_gate)
    table = {}
    for left_out in sorted(set(rows.labels) - {pad.BONA_FIDE}):
        _, threshold, rates = _fit_and_rate(rows, ~rows.held & ~rows.gated & (rows.labels != left_out), bpcer)
        seen = {s: v for s, v in rates["apcer"].items() if s != left_out}
        worst = max(seen, key=seen.get)
        table[left_out] = {"unseen_apcer": rates["apcer"].get(left_out), "seen_apcer_worst": seen[worst],
                           "seen_worst_species": worst, "seen_apcer": seen, "bpcer": rates["bpcer"],
                           "threshold": threshold, "attacks_held_out": rates["attacks_held_out"][left_out]}
    unseen = {k: v["unseen_apcer"] for k, v in table.items() if v["unseen_apcer"] is not None}
    worst = max(unseen, key=unseen.get)
    return {"species": table, "worst_unseen_species": worst, "worst_unseen_apcer": unseen[worst],
            "bpcer_target_out_of_fold": bpcer, "context_gate": context_gate}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def markdown(seen: dict, loso: dict) -> str:
    """The two grey tables: every species seen (per species), and leave-one-species-out."""
    sources = list(seen["bpcer"])
    lines = ["| species (all seen) | held-out APCER | attacks judged (too close) |", "|---|---|---|"]
    lines += [f"| {s} | {_pct(v)} | {seen['attacks_held_out'][s]} ({seen['attacks_too_close'][s]}) |"
              for s, v in seen["apcer"].items()]
    lines += ["", "| source | held-out bona fide | BPCER | of which refused by a gate |", "|---|---|---|---|"]
    lines += [f"| {s} | {seen['bona_fide_held_out'][s]} | {_pct(seen['bpcer'][s])} | "
              f"{_pct(seen['bona_fide_gated'][s])} |" for s in sources]
    lines += ["", "| left-out species | unseen APCER | worst seen APCER | " + " | ".join(f"BPCER {s}" for s in sources)
              + " |", "|---|---|---|" + "---|" * len(sources)]
    for name, row in loso["species"].items():
        lines.append(f"| {name} | {_pct(row['unseen_apcer'])} | {_pct(row['seen_apcer_worst'])} "
                     f"({row['seen_worst_species']}) | "
                     + " | ".join(_pct(row["bpcer"].get(s)) for s in sources) + " |")
    lines += ["", f"Worst unseen species: **{loso['worst_unseen_species']}** ({_pct(loso['worst_unseen_apcer'])}).", ""]
    return "\n".join(lines)


def _rows(args: argparse.Namespace) -> list[GreyItem]:
    cache = Path(args.rows) if args.rows else None
    if cache is not None and cache.is_file():
        return load_rows(cache)
    from appliance.config import load_config
    from appliance.liveness.checker import LivenessChecker
    from appliance.pipeline import FacePipeline

    config = load_config(Path(args.config) if args.config else None)
    pipeline = FacePipeline(config)
    try:
        items = score_sets(pipeline, LivenessChecker(config.liveness, pipeline.registry), args.sets)
    finally:
        pipeline.close()
    if cache is not None:
        save_rows(items, cache)
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.evaluation.pad_grey", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("calibrate", "evaluate"))
    parser.add_argument("sets", nargs="+", help="PAD sets (bona_fide/, attack/<species>/), judged as grey copies")
    parser.add_argument("--rows", help="cache of the scored cue rows (JSON): read if present, else written")
    parser.add_argument("--bpcer", type=float, default=BPCER_TARGET, help="out-of-fold BPCER target of the threshold")
    parser.add_argument("--calibration", help="calibrate: the file whose 'grey' section is rewritten (default: "
                        "the configured liveness calibration)")
    parser.add_argument("--config", help="appliance.toml")
    parser.add_argument("--no-context-gate", action="store_true",
                        help="evaluate: judge face-filling crops too (a measurement; the runtime always gates)")
    parser.add_argument("--out", help="evaluate: JSON report")
    parser.add_argument("--markdown", help="evaluate: the tables as markdown")
    args = parser.parse_args(argv)
    items = _rows(args)
    synthetic = all(pad.synthetic_info(s) is not None for s in args.sets)
    sources = ", ".join(str(Path(s).resolve()) for s in args.sets) + " (greyscale copies)"
    calibration, seen = calibrate(items, args.bpcer, synthetic, sources, not args.no_context_gate)
    if args.action == "calibrate":
        from appliance.config import load_config
        from appliance.liveness.checker import calibration_path

        out = Path(args.calibration) if args.calibration else calibration_path(
            load_config(Path(args.config) if args.config else None).liveness)
        merge_modes(load_existing(out), {"grey": calibration}).save(out)
        print(f"grey: threshold {calibration.threshold:.4f}, held-out BPCER "
              + ", ".join(f"{s} {_pct(v)}" for s, v in seen["bpcer"].items()) + f"; written to {out}")
        return 0
    loso = leave_one_out(items, args.bpcer, not args.no_context_gate)
    table = markdown(seen, loso)
    result = {"seen": seen, "leave_one_out": loso, "sets": args.sets, "synthetic": synthetic,
              "note": pad.SYNTHETIC_NOTE if synthetic else "real captures"}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
