"""Liveness commands: ``eval pad``, ``liveness synth|calibrate|collect|check``."""
from __future__ import annotations

import argparse
import datetime as dt
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import json_text
from appliance.cli.arg_types import non_negative_float, non_negative_int, positive_int, rate, rate_or_zero
from appliance.cli.common import config_from, pipeline_from, write_json
from appliance.config import LIVENESS_LEVELS
from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation.datasets import SPLITS

if TYPE_CHECKING:
    from appliance.liveness.checker import LivenessDecision

NEGATIVE = 1


def register(sub: argparse._SubParsersAction) -> None:
    live = sub.add_parser("liveness", help="presentation-attack detection: synthetic sets, calibration, capture")
    actions = live.add_subparsers(dest="action", required=True, metavar="ACTION")

    synth = actions.add_parser("synth", help="write a SYNTHETIC attack set (bona_fide/ + attack/<species>/)")
    synth.add_argument("source", help="face dataset: one folder of images per identity")
    synth.add_argument("--out", required=True, help="output folder (outside the repo)")
    synth.add_argument("--split", choices=SPLITS, default="all", help="identities of even (a) / odd (b) index "
                                                                      "(default %(default)s)")
    synth.add_argument("--per-species", type=positive_int, default=400,
                       help="source images drawn per attack species, at most (default %(default)s)")
    synth.add_argument("--species", nargs="+", default=None,
                       help="print screen replay (default), the unseen species photo, mask, and the wide species")
    synth.add_argument("--frames", type=non_negative_int, default=0,
                       help="write bursts of N frames (flat-plane motion) (default 0: one image per attack)")
    synth.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed of the images drawn and the attacks made of them (default %(default)s)")
    synth.set_defaults(handler=cmd_synth)

    calibrate = actions.add_parser("calibrate", help="fit the cue fusion and set the threshold at a target APCER")
    calibrate.add_argument("dataset", help="bona_fide/ + attack/<species>/ captured with THIS camera")
    calibrate.add_argument("--target-apcer", type=rate, default=0.05, help="worst-species APCER at the threshold "
                                                                           "(default %(default)s)")
    calibrate.add_argument("--target-bpcer", type=rate,
                           help="set the threshold at this bona fide rejection instead (out of fold; issue 15)")
    calibrate.add_argument("--out", help="calibration file (default: liveness.calibration of the configuration)")
    calibrate.add_argument("--model-bpcer", type=rate_or_zero, default=0.005,
                           help="bona fide rejection allowed to the model's own veto, which sets its floor; 0: "
                                "the floor rejects no bona fide presentation of the calibration set "
                                "(default %(default)s)")
    calibrate.add_argument("--modes", nargs="+", choices=("colour", "grey"), default=["colour"],
                           help="fit the colour fusion, the greyscale path (grey copies, its own cues and "
                                "gates: appliance.evaluation.pad_grey), or both; a mode not fitted is kept "
                                "(default colour)")
    calibrate.add_argument("--keep-fusion", action="store_true", help="only move the threshold, keep the weights")
    calibrate.set_defaults(handler=cmd_calibrate)

    collect = actions.add_parser("collect", help="capture bona fide or attack presentations from the camera")
    collect.add_argument("--source", default="0", help="picamera2, a camera index, URL, video or frame folder "
                                                       "(default %(default)s)")
    collect.add_argument("--out", required=True, help="dataset folder (bona_fide/ + attack/<species>/)")
    collect.add_argument("--label", required=True, help="bona_fide, or attack/<species> (e.g. attack/print)")
    collect.add_argument("--count", type=positive_int, default=20, help="presentations to record (default %(default)s)")
    collect.add_argument("--frames", type=positive_int, default=5, help="frames per presentation (a burst folder) "
                                                                        "(default %(default)s)")
    collect.add_argument("--pause", type=non_negative_float, default=2.0,
                         help="seconds between presentations (default %(default)s)")
    collect.set_defaults(handler=cmd_collect)

    check = actions.add_parser("check", help="judge images or frame folders (exit 0 all live, 1 otherwise)")
    check.add_argument("items", nargs="+", help="images, short videos or folders of frames (one presentation each)")
    check.add_argument("--level", choices=LIVENESS_LEVELS, help="override the configured policy level")
    check.add_argument("--json", action="store_true",
                       help="print each item's decision as JSON (live, attack, score, threshold, reasons, cues)")
    check.set_defaults(handler=cmd_check)
    _register_bench(actions)


def _register_bench(actions: argparse._SubParsersAction) -> None:
    bench = actions.add_parser("bench", help="liveness cost per frame on the benchmark's 640x480 frames")
    bench.add_argument("--frames", type=positive_int, default=60, help="benchmark frames (bursts are built from them) "
                                                                       "(default %(default)s)")
    bench.add_argument("--burst", type=positive_int, default=5, help="frames per presentation (default %(default)s)")
    bench.add_argument("--level", choices=LIVENESS_LEVELS[1:3], default="passive+motion",
                       help="policy level measured (default %(default)s)")
    bench.set_defaults(handler=cmd_bench)


def register_eval(kinds: argparse._SubParsersAction) -> None:
    """Adds ``eval pad`` to the evaluation group of ``eval_commands``."""
    pad = kinds.add_parser("pad", help="presentation-attack detection (ISO/IEC 30107-3): APCER, BPCER, ACER")
    pad.add_argument("dataset", help="bona_fide/ + attack/<species>/ (images or frame folders)")
    pad.add_argument("--out", help="JSON report (default: print)")
    pad.add_argument("--plot", help="DET plot PNG (APCER vs BPCER per species)")
    pad.add_argument("--level", choices=LIVENESS_LEVELS[1:3],
                     help="policy level (default: configured; active -> passive+motion)")
    pad.add_argument("--grey", action="store_true", help="judge greyscale copies (a monochrome / IR camera)")
    pad.add_argument("--leave-one-out", action="store_true",
                     help="per species: calibrate on the others (calibration identities), APCER on held-out ones")
    pad.add_argument("--markdown", help="with --leave-one-out: also write the table as markdown here")
    pad.set_defaults(handler=cmd_eval_pad)


def _checker(args: argparse.Namespace, pipeline, calibration=None):
    from appliance.liveness.checker import LivenessChecker

    config = pipeline.config
    return LivenessChecker(config.liveness, pipeline.registry, 1, calibration)


def cmd_eval_pad(args: argparse.Namespace) -> int:
    import numpy as np

    from appliance.evaluation import pad
    from appliance.evaluation.plots import det_plot

    pipeline = pipeline_from(args)
    checker = _checker(args, pipeline)
    if args.leave_one_out:
        return _eval_pad_loso(args, pipeline, checker)
    level = args.level or pipeline.config.liveness.level
    items = pad.scan(args.dataset)
    try:
        scores = pad.score_items(pipeline, checker, items, level, grey=args.grey)
    finally:
        pipeline.close()
    synthetic = pad.synthetic_info(args.dataset)
    result = pad.report(scores, checker.calibration.threshold, synthetic)
    result.update({"dataset": str(Path(args.dataset)), "level": level, "greyscale_copies": args.grey,
                   "model": checker.config.pack, "licence": checker.model.pack.licence,
                   "calibration": checker.calibration.operating_point,
                   "calibration_synthetic": checker.calibration.synthetic})
    if args.plot:
        by_label = scores.by_label()
        bona = by_label.pop(pad.BONA_FIDE)
        curves = {k: (bona[np.isfinite(bona)], v[np.isfinite(v)]) for k, v in by_label.items()}
        title = f"PAD DET - {Path(args.dataset).name}" + (" (SYNTHETIC attacks)" if synthetic else "")
        det_plot(curves, Path(args.plot), title, "APCER (attack accepted as live)", "BPCER (bona fide rejected)")
        result["det_plot"] = args.plot
    write_json(result, args.out)
    if args.out:
        def pct(value: float | None) -> str:  # None: a species none of whose items showed a face
            return "n/a" if value is None else f"{100 * value:.2f} %"

        apcer = ", ".join(f"{k} {pct(v)}" for k, v in result["apcer"].items())
        tag = "SYNTHETIC attacks: " if synthetic else ""
        print(f"{tag}APCER {apcer}; BPCER {pct(result['bpcer'])}; ACER {pct(result['acer'])}; "
              f"BPCER20 {pct(result['bpcer20'])}; BPCER100 {pct(result['bpcer100'])} "
              f"({result['counts']['bona_fide']} bona fide)")
    return 0


def _eval_pad_loso(args: argparse.Namespace, pipeline, checker) -> int:
    from appliance.evaluation import pad_loso

    try:
        result = pad_loso.evaluate(pipeline, checker, str(Path(args.dataset)), grey=args.grey)
    finally:
        pipeline.close()
    table = pad_loso.markdown(result, f"Unseen species - {Path(args.dataset).name}" + (" (grey)" if args.grey else ""))
    if args.markdown:
        Path(args.markdown).write_text(table, encoding="utf-8")
    write_json(result, args.out)
    if args.out:
        print(table)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from appliance.evaluation import synthetic, synthetic_set

    species = tuple(args.species or synthetic.SPECIES)
    unknown = set(species) - set(synthetic.ALL_SPECIES)
    if unknown:
        raise ApplianceError(ErrorCode.DATASET_INVALID,
                             f"unknown species {sorted(unknown)}; known: {synthetic.ALL_SPECIES}")
    # masks and cut-outs are placed by the detector: the face's box, the eyes (its first two points)
    pipeline = pipeline_from(args) if {"mask", "cutout_eyes"} & set(species) else None
    locate = locate_eyes = None
    if pipeline is not None:
        def locate(image):
            face = pipeline.detect(image).subject
            return None if face is None else face.box

        def locate_eyes(image):
            face = pipeline.detect(image).subject
            return None if face is None else tuple((float(x), float(y)) for x, y in face.five_points[:2])

    try:
        info = synthetic_set.write_set(args.source, args.out, args.split, args.per_species, species, args.seed,
                                       args.frames, locate, locate_eyes)
    finally:
        if pipeline is not None:
            pipeline.close()
    print(f"SYNTHETIC set in {args.out}: {info['bona_fide']} bona fide, attacks {info['attacks']}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from appliance.evaluation import pad
    from appliance.evaluation.pad_calibration import calibrate, load_existing, merge_modes
    from appliance.liveness.checker import calibration_path

    config = config_from(args)
    pipeline = pipeline_from(args, config)
    checker = _checker(args, pipeline)
    items = pad.scan(args.dataset)
    synthetic = pad.synthetic_info(args.dataset) is not None
    source = str(Path(args.dataset).resolve())
    fitted = {}
    try:
        for mode in args.modes:
            grey = mode == "grey"
            if grey:  # the grey path has its own cues, gates and fitting (docs/liveness.md)
                from appliance.evaluation import pad_grey

                bpcer = args.target_bpcer or pad_grey.BPCER_TARGET
                fitted[mode], _ = pad_grey.calibrate(pad_grey.score_sets(pipeline, checker, [args.dataset]), bpcer,
                                                     synthetic, source + " (greyscale copies)")
                continue
            scored = pad.score_items(pipeline, checker, items, "passive", with_rows=True, grey=grey)
            kept = checker.calibration if args.keep_fusion else None
            if kept is not None and grey:
                kept = kept.grey
            fitted[mode] = calibrate(items, scored.rows, args.target_apcer, args.model_bpcer, synthetic,
                                     source + (" (greyscale copies)" if grey else ""), kept,
                                     target_bpcer=args.target_bpcer)
    finally:
        pipeline.close()
    out = Path(args.out) if args.out else calibration_path(config.liveness)
    calibration = merge_modes(load_existing(out), fitted)  # a mode not fitted now is kept from the file
    calibration.save(out)
    tag = " (SYNTHETIC attacks: recalibrate with real captures from this camera)" if synthetic else ""
    for mode, fit in fitted.items():
        point = fit.operating_point
        if "apcer_out_of_fold" not in point:  # the grey path reports on its held-out identities
            print(f"{mode}: liveness threshold {fit.threshold:.4f}; held-out BPCER "
                  + ", ".join(f"{name} {100 * rate:.2f} %" for name, rate in point["held_out"]["bpcer"].items()))
            continue
        worst = max(point["apcer_out_of_fold"].values())
        print(f"{mode}: liveness threshold {fit.threshold:.4f}, model floor {fit.model_floor:.4f}; out of fold: "
              f"BPCER {100 * point['bpcer_out_of_fold']:.2f} %, worst-species APCER {100 * worst:.2f} %")
    print(f"written to {out}{tag}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    import cv2

    from appliance.capture.sources import open_source

    label = args.label.strip("/")
    if label != "bona_fide" and not (label.startswith("attack/") and len(label.split("/")) == 2):
        raise ApplianceError(ErrorCode.DATASET_INVALID, "--label must be bona_fide or attack/<species>")
    folder = Path(args.out) / label
    folder.mkdir(parents=True, exist_ok=True)
    source = open_source(args.source)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        stream = source.frames()
        for number in range(args.count):
            print(f"presentation {number + 1}/{args.count}: {label} - hold it in front of the camera", flush=True)
            target = folder / f"{stamp}-{number:03d}"
            target.mkdir()
            for index in range(args.frames):
                try:
                    frame = next(stream)
                except StopIteration:
                    raise ApplianceError(ErrorCode.STREAM_ENDED,
                                         f"{args.source}: ended after {number} presentations") from None
                cv2.imwrite(str(target / f"frame_{index:03d}.png"), frame.image)
            if number + 1 < args.count and args.pause > 0:
                time.sleep(args.pause)
    finally:
        source.close()
    print(f"{args.count} presentations written to {folder}; then run 'appliance liveness calibrate {args.out}'")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from appliance.evaluation import pad

    pipeline = pipeline_from(args)
    checker = _checker(args, pipeline)
    results = []
    try:
        for name in args.items:
            item = pad.item_from_path("item", Path(name))
            if item is None:
                raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{name}: not an image or a folder of frames")
            frames = pad.load_frames(item, checker.config.burst_frames)
            faces = [pipeline.detect(f).subject for f in frames]
            decision = checker.judge(frames, faces, level=args.level if args.level != "active" else "passive+motion")
            results.append((name, decision))
    finally:
        pipeline.close()
    if args.json:
        print(json_text.dumps([{"item": n, **d.summary()} for n, d in results], indent=2, default=float))
    else:
        for name, decision in results:
            print(f"{name}: {verdict_line(decision)}")
    return 0 if all(d.live for _, d in results) else NEGATIVE


def verdict_line(decision: LivenessDecision) -> str:
    """One item's verdict as the person at the console reads it: live / ATTACK with the score, or
    "not judged" with why and, where the person at the door can fix it, what the door asks."""
    from appliance.liveness.checker import NOT_JUDGED

    reasons = [f"{r}: {NOT_JUDGED[r]}" if r in NOT_JUDGED else r for r in decision.reasons]
    detail = f" ({', '.join(reasons)})" if reasons else ""
    if math.isnan(decision.score):  # liveness off, no face, a gate, an uncalibrated mode: no score to show
        return f"{'live' if decision.live else 'not judged'}{detail}"
    verdict = "live" if decision.live else ("ATTACK" if decision.attack else "refused")
    return f"{verdict} score {decision.score:.3f} threshold {decision.threshold:.3f}{detail}"


def cmd_bench(args: argparse.Namespace) -> int:
    """Median liveness milliseconds per frame: one judge() per burst, divided by the burst."""
    import cv2
    import numpy as np

    from appliance.bench.frames import synthesize_frames

    pipeline = pipeline_from(args)
    checker = _checker(args, pipeline)
    try:
        frames = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
                  for b in synthesize_frames(args.frames, seed=3).frames]
        found = [(f, pipeline.detect(f).subject) for f in frames]
        found = [(f, face) for f, face in found if face is not None]
        checker.judge([found[0][0]], [found[0][1]], level=args.level)  # load and warm up
        per_frame, model, cues, motion = [], [], [], []
        for frame, face in found:
            burst = [np.ascontiguousarray(np.roll(frame, shift, axis=1)) for shift in range(args.burst)]
            start = time.perf_counter()
            decision = checker.judge(burst, [face] * args.burst, level=args.level)
            per_frame.append((time.perf_counter() - start) * 1000 / args.burst)
            model.append(decision.timings_ms["liveness_model"])
            cues.append(decision.timings_ms["image_cues"])
            motion.append(decision.timings_ms.get("motion", 0.0))
    finally:
        pipeline.close()
    print(f"{args.level}, bursts of {args.burst} on {len(found)} benchmark frames: liveness adds "
          f"{np.median(per_frame):.1f} ms median per frame (model {np.median(model):.1f} ms per call, "
          f"image cues {np.median(cues):.1f} ms and motion {np.median(motion):.1f} ms per burst)")
    return 0
