"""Evaluation commands: ``eval verification``, ``eval identification``, ``calibrate``."""
from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from appliance import paths
from appliance.cli import liveness_commands
from appliance.cli.arg_types import fraction, non_negative_int, positive_int, rate
from appliance.cli.common import config_from, fmt_rate, model_info, pipeline_from, write_json
from appliance.config import save_threshold
from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation.datasets import SPLITS


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("eval", help="biometric performance evaluation (ISO/IEC 19795-1)")
    kinds = evaluate.add_subparsers(dest="kind", required=True, metavar="KIND")
    liveness_commands.register_eval(kinds)  # eval pad (ISO/IEC 30107-3)

    occ = kinds.add_parser("occlusion", help="SYNTHETIC masks, sunglasses, eye bars, hands: occlusion detection rates")
    occ.add_argument("dataset", help="folder with one sub-folder of images per identity (occluders are drawn on them)")
    occ.add_argument("--out", required=True, help="report folder: occlusion.json, occlusion.md, images.json")
    occ.add_argument("--per-identity", type=positive_int, default=2,
                     help="photos drawn on per identity (default %(default)s)")
    occ.add_argument("--identities", type=positive_int, help="at most this many identities per split (a quick look)")
    occ.add_argument("--seed", type=non_negative_int, default=0,
                     help="seed of the photos chosen and the occluders drawn (default %(default)s)")
    occ.add_argument("--profile", choices=("verification", "enrollment"), default="verification",
                     help="the configuration's quality profile that judges the images (default %(default)s)")
    occ.add_argument("--images", help="also write the generated set here (<split>/<occluder>/<identity>/)")
    occ.set_defaults(handler=cmd_eval_occlusion)

    ver = kinds.add_parser("verification", help="1:1: FTA, FTE, EER, FNMR at FMR, DET plot")
    ver.add_argument("dataset", help="folder with one sub-folder of images per identity")
    ver.add_argument("--out", help="JSON report (default: print)")
    ver.add_argument("--plot", help="DET plot PNG")
    ver.add_argument("--pack", help="embedding pack (default from the configuration)")
    ver.add_argument("--seed", type=non_negative_int, default=0, help="seed for impostor sampling on large sets "
                                                                      "(default %(default)s)")
    ver.add_argument("--split", choices=SPLITS, default="all",
                        help="identities of even (a) or odd (b) index only: calibrate on one, report on the other "
                             "(default %(default)s)")
    ver.set_defaults(handler=cmd_eval_verification)

    ident = kinds.add_parser("identification", help="1:N: FNIR at FPIR, rank-1")
    ident.add_argument("dataset", help="folder with one sub-folder of images per identity")
    ident.add_argument("--out", help="JSON report (default: print)")
    ident.add_argument("--pack", help="embedding pack (default from the configuration)")
    ident.add_argument("--gallery-fraction", type=fraction, default=0.7,
                       help="fraction (0-1) of identities enrolled in the gallery; the others make the non-mated "
                            "searches (default %(default)s)")
    ident.add_argument("--gallery-images", type=positive_int, default=1,
                       help="images per enrolled identity averaged into its gallery template; its other images "
                            "are the mated searches (default %(default)s)")
    ident.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed choosing the identities enrolled in the gallery (default %(default)s)")
    ident.add_argument("--split", choices=SPLITS, default="all",
                        help="identities of even (a) or odd (b) index only: calibrate on one, report on the other "
                             "(default %(default)s)")
    ident.set_defaults(handler=cmd_eval_identification)

    register_transaction(kinds)

    models = kinds.add_parser("models", help="embedding packs side by side: FNMR (calibrated on split a, "
                              "reported on b), ms per face, size, licence chain (docs/models.md)")
    models.add_argument("dataset", help="folder with one sub-folder of images per identity")
    models.add_argument("--packs", required=True, help="comma-separated embedding pack ids")
    models.add_argument("--out", required=True, help="folder for models.json and models.md")
    models.add_argument("--seed", type=non_negative_int, default=0, help="seed for impostor sampling on large sets "
                                                                         "(default %(default)s)")
    models.set_defaults(handler=cmd_eval_models)

    cal = sub.add_parser("calibrate", help="set the decision threshold at a target FMR")
    cal.add_argument("dataset", help="folder with one sub-folder of images per identity")
    cal.add_argument("--target-fmr", type=rate, default=1e-3,
                     help="false match rate on the dataset's impostor pairs the threshold is set at, a fraction "
                          "(default %(default)s)")
    cal.add_argument("--pack", help="embedding pack whose threshold is written to the configuration file "
                                    "(default from the configuration)")
    cal.add_argument("--split", choices=SPLITS, default="all",
                        help="identities of even (a) or odd (b) index only: calibrate on one, report on the other "
                             "(default %(default)s)")
    cal.set_defaults(handler=cmd_calibrate)


def _templates(args: argparse.Namespace):
    from appliance.evaluation.datasets import scan_identities
    from appliance.evaluation.runner import extract_dataset

    pipeline = pipeline_from(args)
    try:
        samples = scan_identities(args.dataset, split=args.split)
        data = extract_dataset(pipeline, samples)
    finally:
        pipeline.close()
    return pipeline, data


def cmd_eval_verification(args: argparse.Namespace) -> int:
    from appliance.evaluation import verification
    from appliance.evaluation.plots import det_plot

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
    from appliance.evaluation import identification

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


def cmd_eval_models(args: argparse.Namespace) -> int:
    from appliance.evaluation import models_survey

    packs = [pack.strip() for pack in args.packs.split(",") if pack.strip()]
    result = models_survey.survey(config_from(args), Path(args.dataset), packs, args.seed)
    for path in models_survey.write_report(result, Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from appliance.evaluation import metrics, verification

    config = config_from(args)
    pipeline, data = _templates(args)
    scores = verification.scores(data)
    if not metrics.estimable(len(scores.impostor), args.target_fmr):  # nothing is written then
        needed = metrics.comparisons_needed(args.target_fmr)
        raise ApplianceError(ErrorCode.DATASET_INVALID, f"{len(scores.impostor)} impostor pairs are too few to "
                             f"calibrate at FMR {args.target_fmr:g}: at least {needed:,} are needed (more "
                             "identities with usable images, or a higher --target-fmr)")
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


def register_transaction(kinds: argparse._SubParsersAction) -> None:
    from appliance.config.quality_presets import PRESET_NAMES

    tx = kinds.add_parser("transaction", help="transaction level: FTE, FTA, FRR, FAR with 95 %% intervals, "
                                              "enrollment and door bursts as the appliance runs them")
    tx.add_argument("dataset", help="folder with one sub-folder of images per identity")
    tx.add_argument("--pack", action="append", help="embedding pack (repeat for several; default from the "
                                                    "configuration)")
    tx.add_argument("--out", help="folder for one JSON report per pack, transaction-<pack>.json (default: print)")
    tx.add_argument("--split", choices=SPLITS, default="all", help="identities reported on (default %(default)s)")
    tx.add_argument("--calibrate-on", choices=("a", "b"),
                    help="set the threshold at --target-far on this split (default: the configured threshold)")
    tx.add_argument("--target-far", type=rate, default=1e-3, help="transaction FAR the calibrated threshold meets "
                                                                  "(default %(default)s)")
    tx.add_argument("--burst", type=positive_int,
                    help="frames per door attempt, best-of by quality (default 3, as the door)")
    tx.add_argument("--attempts", type=positive_int,
                    help="door attempts per transaction, a try and retries (default 2, as the door)")
    tx.add_argument("--enrollment-profile", choices=PRESET_NAMES,
                    help="named enrollment profile (default: the configured quality_enrollment)")
    tx.set_defaults(handler=cmd_eval_transaction)


def cmd_eval_transaction(args: argparse.Namespace) -> int:
    from appliance.evaluation import transaction
    from appliance.pipeline import FacePipeline

    config = config_from(args)
    burst = transaction.DOOR_BURST_FRAMES if args.burst is None else args.burst
    attempts = transaction.DOOR_ATTEMPTS if args.attempts is None else args.attempts
    reports = []
    for pack in args.pack or [None]:
        pipeline = FacePipeline(config, embedder_pack=pack)
        try:
            report = transaction.evaluate(pipeline, args.dataset, model_info(pipeline), args.split, args.calibrate_on,
                                          args.target_far, burst, attempts, args.enrollment_profile or "")
        finally:
            pipeline.close()
        reports.append(report)
        if args.out:
            write_json(report, str(Path(args.out) / f"transaction-{report['model']['pack']}.json"))
            print(f"{report['model']['pack']}: FTE {fmt_rate(report['fte_rate'])}, FTA {fmt_rate(report['fta_rate'])}, "
                  f"FRR {fmt_rate(report['frr'])}, FAR {fmt_rate(report['far'])} at {report['threshold']:.4f} "
                  f"({report['transactions']['genuine']} genuine, {report['transactions']['impostor']} impostor "
                  f"transactions)")
    if not args.out:
        write_json(reports[0] if len(reports) == 1 else reports, None)
    return 0


def cmd_eval_occlusion(args: argparse.Namespace) -> int:
    """Calibrate-on-a, report-on-b occlusion rates (docs/quality.md)."""
    from appliance.evaluation import occlusion

    pipeline = pipeline_from(args)
    try:
        report = occlusion.run(pipeline, args.dataset, args.profile, ("a", "b"), args.per_identity, args.seed,
                               args.identities, Path(args.images) if args.images else None)
    finally:
        pipeline.close()
    out = Path(args.out)
    write_json(report.pop("images"), str(out / "images.json"))
    write_json(report, str(out / "occlusion.json"))
    table = occlusion.markdown(report)
    (out / "occlusion.md").write_text(table, encoding="utf-8")
    print(table)
    return 0
