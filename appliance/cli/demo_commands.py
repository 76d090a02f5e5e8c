"""``appliance demo``: the whole appliance on one machine, end to end.

Starts a real Mosquitto broker with TLS and ACLs, a matcher service and an edge daemon as
separate processes; enrolls people (with consent) from the shared faces; feeds the edge
camera frames replayed from a folder (enrolled people, strangers, photo attacks); prints
each pass as the door sees it; then stops everything and leaves no process behind.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance import paths
from appliance.cli.arg_types import non_negative_int, positive_int
from appliance.cli.common import config_from, pipeline_from
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.masking import mask_name
from appliance.security.roles import Principal, Role

DEFAULT_DATASET = "data/faces/celeba-dev"
SPOOF_SAMPLES = "data/spoof/samples"
DEMO_NAMES = ("Zhang San", "Li Si", "Wang Wu", "Zhao Liu", "Chen Qi", "Ana Lima", "John Doe", "Maria Rossi")
DEVICE, MATCHER = "door-1", "matcher-1"
READY_TIMEOUT_S = 120.0
FRAMES_PER_PASS = 5
ENROLLER = Principal("demo-enroller", Role.OPERATOR)
DEMO_SECURITY = Principal("demo-security", Role.SECURITY_ADMIN)
DEMO_CENTRAL_REASON = "demo site on one machine: the matcher and the door share this host, no network in between"


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="the whole appliance end to end: broker, matcher, edge, enrolled people")
    demo.add_argument("--dataset", help=f"identity folders (default: $APPLIANCE_SHARED_DATA/{DEFAULT_DATASET})")
    demo.add_argument("--enroll", type=positive_int, default=5, help="people to enroll (default %(default)s)")
    demo.add_argument("--unknown", type=non_negative_int, default=2,
                      help="strangers who must be refused (default %(default)s)")
    demo.add_argument("--site", help="keep the site in this folder (default: a temporary folder)")
    demo.add_argument("--seed", type=non_negative_int, default=7,
                      help="seed choosing who is enrolled and who is a stranger (default %(default)s)")
    demo.set_defaults(handler=cmd_demo)


def _choose(
    dataset: Path, enrolled: int, unknown: int, seed: int
) -> tuple[dict[str, list[Path]], list[str], list[str]]:
    from appliance.evaluation.datasets import scan_identities

    by_identity: dict[str, list[Path]] = {}
    for sample in scan_identities(dataset, min_per_identity=7):
        by_identity.setdefault(sample.identity, []).append(sample.path)
    identities = sorted(by_identity)
    random.Random(seed).shuffle(identities)
    if len(identities) < enrolled + unknown:
        raise ApplianceError(
            ErrorCode.DATASET_INVALID, f"{dataset}: needs {enrolled + unknown} identities with 7+ images"
        )
    return by_identity, identities[:enrolled], identities[enrolled : enrolled + unknown]


def _facing_camera(pipeline, config, files: list[Path]) -> Path:
    """A stranger's first photo the door can judge (no sunglasses, facing the camera): one that
    only gets guidance would never reach a decision, and the demo shows the refusal."""
    import cv2

    for path in files:
        analysis = pipeline.analyze(cv2.imread(str(path)), config.quality_verification)
        if analysis.face is not None and analysis.quality is not None and not analysis.quality.issues:
            return path
    return files[0]


def _wait_for_line(process: subprocess.Popen, marker: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE, f"service exited with {process.returncode}")
            continue
        if marker in line:
            return
    raise ApplianceError(ErrorCode.REQUEST_TIMEOUT, f"service not ready within {timeout:g} s")


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cmd_demo(args: argparse.Namespace) -> int:
    from appliance.broker.process import free_port
    from appliance.matcher.enrollment_desk import ENROLLED, EnrollmentDesk, EnrollmentRequest
    from appliance.matcher.site_policy import justify, matching_decision
    from appliance.matcher.sync_store import open_sync_store
    from appliance.site import Site
    from appliance.stores.protected import key_provider as data_keys

    config = config_from(args)
    dataset = Path(args.dataset) if args.dataset else paths.shared_dir() / DEFAULT_DATASET
    by_identity, enrolled_ids, unknown_ids = _choose(dataset, args.enroll, args.unknown, args.seed)
    folder = Path(args.site) if args.site else Path(tempfile.mkdtemp(prefix="appliance-demo-"))
    port = free_port()
    site = Site(folder, port=port)
    site.provision((DEVICE,), matchers=(MATCHER,))
    print(f"site {folder}: broker on 127.0.0.1:{port} (mutual TLS), devices {DEVICE}, matcher {MATCHER}")

    pipeline = pipeline_from(args, config)
    pipeline.load()
    data = site.protected_data(config)
    sync = open_sync_store(data, data_keys(data.security, data.root))
    desk = EnrollmentDesk(data, sync, pipeline, config)  # the same enrollment as the CLI, API and console
    # the demo's people consent to central matching only: the site records why (docs/security.md)
    if matching_decision(sync) is None:
        justify(data, sync, DEMO_SECURITY, DEMO_CENTRAL_REASON)
    plan: list[tuple[str, list[Path]]] = []
    try:
        for identity, name in zip(enrolled_ids, DEMO_NAMES):
            files = by_identity[identity]
            outcome = desk.enroll(ENROLLER, EnrollmentRequest(name, consent_ref="demo consent form"),
                                  [(p.name, p.read_bytes()) for p in files[:5]])
            if outcome.status != ENROLLED:
                print(f"  {mask_name(name)}: {outcome.message}")
                continue
            print(f"  enrolled {mask_name(name)} from {outcome.images_used} image(s) with consent on record")
            plan.append((f"enrolled {mask_name(name)}", [files[5], files[6]]))
        plan += [("stranger", [_facing_camera(pipeline, config, by_identity[i])]) for i in unknown_ids]
        spoof = paths.shared_dir() / SPOOF_SAMPLES
        plan += [("photo attack", [spoof / "image_F1.jpg"]), ("photo attack", [spoof / "image_F2.jpg"])]
    finally:
        sync.close()
        data.close()
        pipeline.close()

    frames = folder / "camera"
    shutil.rmtree(frames, ignore_errors=True)
    frames.mkdir()
    passes, expected = 0, []
    for who, images in plan:
        for image in images[:1] if who != "photo attack" else images:
            for copy in range(FRAMES_PER_PASS):
                (frames / f"{passes:03d}-{copy}{image.suffix}").symlink_to(image.resolve())
            expected.append(who)
            passes += 1
    random_order = list(range(passes))
    print(f"camera: {passes} people walk up, in this order: " + ", ".join(expected[i] for i in random_order))

    # Replayed still photos carry no head motion, so the demo site runs passive liveness on the
    # device and the matcher alike (the matcher refuses evidence weaker than its policy).
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(folder / "var"), "APPLIANCE__LIVENESS__LEVEL": "passive"}
    base = [sys.executable, "-m", "appliance"] + (["--config", args.config] if args.config else [])
    common = ["--site", str(folder), "--port", str(port), "--host", "127.0.0.1"]
    matcher = edge = None
    try:
        site.broker.start()
        matcher = subprocess.Popen(base + ["matcher", "--name", MATCHER] + common, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True, env=env)
        _wait_for_line(matcher, "ready", READY_TIMEOUT_S)
        print(f"{MATCHER}: ready")
        edge = subprocess.Popen(
            base + ["edge", "--device", DEVICE, "--source", str(frames), "--passes", str(passes),
                    "--cool-down", "0"] + common,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        verdicts = ("ACCEPTED", "REJECTED", "ATTACK", "UNAVAILABLE", "TIMEOUT")
        outcomes = []
        for line in edge.stdout:
            line = line.rstrip()
            if line.startswith(f"{DEVICE}: ") and line.split()[1] in verdicts:
                who = expected[len(outcomes)] if len(outcomes) < len(expected) else "?"
                outcomes.append(line.split()[1])
                print(f"{line}   <- {who}")
            else:
                print(line)
        edge.wait(30)
    finally:
        _stop(edge)
        _stop(matcher)
        site.broker.stop()
        if not args.site:
            shutil.rmtree(folder, ignore_errors=True)
    pairs = list(zip(outcomes, expected))
    false_accepts = sum(o == "ACCEPTED" and not who.startswith("enrolled") for o, who in pairs)
    false_rejects = sum(o != "ACCEPTED" and who.startswith("enrolled") for o, who in pairs)
    attacks_stopped = sum(o == "ATTACK" for o, who in pairs if who == "photo attack")
    print(f"\n{len(outcomes)} passes: {false_accepts} false accepts, {false_rejects} enrolled people refused, "
          f"{attacks_stopped} of {expected.count('photo attack')} photo attacks raised an alarm; "
          "broker, matcher and edge stopped")
    # the door may ask a real person to try again; it must never let the wrong one in
    return 0 if false_accepts == 0 and len(outcomes) == len(expected) else 1
