"""Evaluation commands: ``eval verification``, ``eval identification``, ``calibrate``."""
from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from appliance import paths
from appliance.cli import liveness_commands
from appliance.cli.common import config_from, fmt_rate, model_info, pipeline_from, write_json
from appliance.config import save_threshold
from appliance.evaluation import identification, metrics, verification
from appliance.evaluation.datasets import SPLITS, scan_identities
from appliance.evaluation.plots import det_plot
from appliance.evaluation.runner import extract_dataset


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("eval", help="biometric performance evaluation (ISO/IEC 19795-1)")
    kinds = evaluate.add_subparsers(dest="kind", required=True, metavar="KIND")
    liveness_commands.register_eval(kinds)  # eval pad (ISO/IEC 30107-3)

    ver = kinds.add_parser("verification", help="1:1: FTA, FTE, EER, FNMR at FMR, DET plot")
    ver.add_argument("dataset", help="folder with one sub-folder of images per identity")
    ver.add_argument("--out", help="JSON report (default: print)")
    ver.add_argument("--plot", help="DET plot PNG")
    ver.add_argument("--pack", help="embedding pack (default from the configuration)")
    ver.add_argument("--seed", type=int, default=0, help="seed for impostor sampling on large sets")
    ver.add_argument("--split", choices=SPLITS, default="all",
                        help="identities of even (a) or odd (b) index only: calibrate on one, report on the other")
    ver.set_defaults(handler=cmd_eval_verification)

    ident = kinds.add_parser("identification", help="1:N: FNIR at FPIR, rank-1")
    ident.add_argument("dataset")
    ident.add_argument("--out")
    ident.add_argument("--pack")
    ident.add_argument("--gallery-fraction", type=float, default=0.7)
    ident.add_argument("--gallery-images", type=int, default=1)
    ident.add_argument("--seed", type=int, default=0)
    ident.add_argument("--split", choices=SPLITS, default="all",
                        help="identities of even (a) or odd (b) index only: calibrate on one, report on the other")
    ident.set_defaults(handler=cmd_eval_identification)

    cal = sub.add_parser("calibrate", help="set the decision threshold at a target FMR")
    cal.add_argument("dataset")
    cal.add_argument("--target-fmr", type=float, default=1e-3)
    cal.add_argument("--pack")
    cal.add_argument("--split", choices=SPLITS, default="all",
                        help="identities of even (a) or odd (b) index only: calibrate on one, report on the other")
    cal.set_defaults(handler=cmd_calibrate)


def _templates(args: argparse.Namespace):
    pipeline = pipeline_from(args)
    try:
        samples = scan_identities(args.dataset, split=args.split)
        data = extract_dataset(pipeline, samples)
    finally:
        pipeline.close()
    return pipeline, data


def cmd_eval_verification(args: argparse.Namespace) -> int:
    pipeline, data = _templates(args)
    scores = verification.scores(data, args.seed)
    try:
        configured = pipeline.threshold
    except Exception:  # noqa: BLE001 - an uncalibrated pack simply has no configured point
        configured = None
    report = verification.report(data, scores, model_info(pipeline), configured)
    report["dataset"] = str(Path(args.dataset))
    report["split"] = args.split
    if args.plot:
        det_plot({pipeline.embedder_pack.label: (scores.genuine, scores.impostor)}, Path(args.plot),
                 f"DET - {Path(args.dataset).name}")
        report["det_plot"] = args.plot
    write_json(report, args.out)
    if args.out:
        fnmr = report["fnmr_at_fmr"]
        print(
            f"{report['images']} images, {report['identities']} identities: FTA {fmt_rate(report['fta_rate'])}, "
            f"FTE {fmt_rate(report['fte_rate'])}, EER {fmt_rate(report['eer'])}, FNMR@FMR1e-3 "
            f"{fmt_rate(fnmr['1e-3'])} ({report['genuine_pairs']} genuine, {report['impostor_pairs']} impostor pairs)"
        )
    return 0


def cmd_eval_identification(args: argparse.Namespace) -> int:
    pipeline, data = _templates(args)
    report = identification.evaluate(data, model_info(pipeline), args.gallery_fraction, args.gallery_images, args.seed)
    report["dataset"] = str(Path(args.dataset))
    report["split"] = args.split
    write_json(report, args.out)
    if args.out:
        fnir = report["fnir_at_fpir"]
        print(
            f"gallery {report['gallery_identities']}, mated {report['mated_searches']}, non-mated "
            f"{report['non_mated_searches']}: rank-1 {fmt_rate(report['rank1_rate'])}, "
            f"FNIR@FPIR1e-2 {fmt_rate(fnir['1e-2'])}, FNIR@FPIR1e-3 {fmt_rate(fnir['1e-3'])}"
        )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    config = config_from(args)
    pipeline, data = _templates(args)
    scores = verification.scores(data)
    threshold = metrics.threshold_at_fmr(scores.impostor, args.target_fmr)
    point = metrics.operating_point(scores.genuine, scores.impostor, threshold)
    path = config.source or paths.config_file()
    note = (
        f"FMR {args.target_fmr:g} on {Path(args.dataset).name} split {args.split} "
        f"({point.impostor_pairs} impostor pairs), "
        f"{dt.date.today().isoformat()}"
    )
    save_threshold(path, pipeline.embedder_pack.id, threshold, note)
    print(
        f"threshold {threshold:.4f} for {pipeline.embedder_pack.label} written to {path} "
        f"(FMR {fmt_rate(point.fmr)}, FNMR {fmt_rate(point.fnmr)} on the calibration set)"
    )
    return 0
