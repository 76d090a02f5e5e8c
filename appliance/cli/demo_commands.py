"""``appliance demo``: enroll identities from a labelled folder, then identify others.

The main job of the README until the full door appliance exists: it runs the same
pipeline, enrollment policy and gallery the services use, on real faces replayed as
camera frames.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from appliance import paths
from appliance.capture.images import read_image
from appliance.capture.sources import FolderReplaySource
from appliance.cli.common import pipeline_from
from appliance.enrollment import enroll
from appliance.evaluation.datasets import scan_identities
from appliance.matcher.gallery import Gallery

DEFAULT_DATASET = "data/faces/celeba-dev"


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="enroll some identities from a folder and identify others")
    demo.add_argument("--dataset", help=f"identity folders (default: $APPLIANCE_SHARED_DATA/{DEFAULT_DATASET})")
    demo.add_argument("--enroll", type=int, default=8, help="identities to enroll")
    demo.add_argument("--unknown", type=int, default=4, help="identities never enrolled (must be rejected)")
    demo.add_argument("--probes", type=int, default=3, help="probe images per identity")
    demo.add_argument("--fps", type=float, default=0.0, help="replay rate (0 = as fast as processed)")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    dataset = Path(args.dataset) if args.dataset else paths.shared_dir() / DEFAULT_DATASET
    samples = scan_identities(dataset, min_per_identity=args.probes + 3)
    by_identity: dict[str, list[Path]] = {}
    for sample in samples:
        by_identity.setdefault(sample.identity, []).append(sample.path)
    rng = random.Random(args.seed)
    identities = sorted(by_identity)
    rng.shuffle(identities)
    enrolled_ids, unknown_ids = identities[: args.enroll], identities[args.enroll : args.enroll + args.unknown]

    pipeline = pipeline_from(args)
    pipeline.load()
    pack = pipeline.embedder_pack
    gallery = Gallery(pack.id, pack.version, pack.embedding_size or 0)
    threshold = pipeline.threshold
    print(f"embedding pack {pack.label} ({pack.licence}); threshold from calibration")
    probes: list[tuple[str, Path]] = []
    for identity in enrolled_ids:
        files = by_identity[identity]
        result = enroll(pipeline, (read_image(p) for p in files[:5]))
        if result.enrolled:
            gallery.upsert(identity, result.template)
            print(f"enrolled {identity} from {result.used} image(s)")
        else:
            print(f"failed to enrol {identity}: {sorted({c for codes in result.rejections for c in codes})}")
        probes += [(identity, p) for p in files[5 : 5 + args.probes]]
    probes += [(identity, p) for identity in unknown_ids for p in by_identity[identity][: args.probes]]
    rng.shuffle(probes)

    tally = {"correct": 0, "wrong": 0, "retry": 0}
    with tempfile.TemporaryDirectory(prefix="appliance-demo-") as folder:
        truth = {}
        for index, (identity, path) in enumerate(probes):
            frame_file = Path(folder) / f"{index:04d}{path.suffix}"
            frame_file.symlink_to(path.resolve())
            truth[str(frame_file)] = identity
        print(f"\nidentifying {len(probes)} camera frames ({len(enrolled_ids)} enrolled, {len(unknown_ids)} unknown people)")
        for frame in FolderReplaySource(folder, fps=args.fps).frames():
            start = time.perf_counter()
            analysis, template = pipeline.template(frame.image)
            elapsed = (time.perf_counter() - start) * 1000
            expected = truth[frame.origin]
            if template is None or not analysis.quality.passed:
                tally["retry"] += 1
                print(f"frame {frame.index:3d}  RETRY   {analysis.quality.issues[0].guidance:34s} {elapsed:5.0f} ms")
                continue
            best = gallery.best(template)
            accepted = best is not None and best.score >= threshold
            who = best.subject_id if accepted else "unknown"
            ok = who == (expected if expected in gallery else "unknown")
            tally["correct" if ok else "wrong"] += 1
            verdict = "ACCEPT" if accepted else "REJECT"
            print(f"frame {frame.index:3d}  {verdict}  {who:10s} {'correct' if ok else 'WRONG':8s} "
                  f"(truth {expected if expected in gallery else 'not enrolled'}) {elapsed:5.0f} ms")
    pipeline.close()
    print(f"\n{tally['correct']} correct, {tally['wrong']} wrong, {tally['retry']} asked to retry")
    return 0
