"""Start-up self-test of a model pack: load it and run it on real faces.

A checksum proves the file is the one signed, not that it works with this runtime, this
alignment and this threshold. So the embedding pack must find a face in each test image,
produce unit-length finite vectors of the declared size, and tell two photos of one person
(similar above the threshold) from a photo of another (below it). Loading the model at all
is part of the test: a file the runtime refuses fails here, not at the first door pass.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from appliance import paths
from appliance.config import Config, with_overrides
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs.manifest import DETECTION, EMBEDDING, LANDMARKS, ModelPack
from appliance.ops.updates import ACTIVE, SelfTest, installed, run_selftest, updates_root

log = logging.getLogger(__name__)

UPDATABLE_KINDS = (EMBEDDING, LANDMARKS, DETECTION)  # the kinds the self-test puts in the pipeline
YUNET = "yunet"  # the detector setting that runs the fallback detector pack (config.tables.ALLOWED_DETECTORS)
SELFTEST_DATASET = ("data", "faces", "celeba-dev")  # below the shared folder, by default
UNIT_TOLERANCE = 1e-3


def default_images(folder: Path | None = None) -> tuple[Path, Path, Path]:
    """Two photos of one person and one of another, from the first two identities."""
    root = Path(folder) if folder else paths.shared_dir().joinpath(*SELFTEST_DATASET)
    people = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if len(people) < 2:
        raise ApplianceError(ErrorCode.SELFTEST_FAILED, f"self-test images not found in {root}")
    first, second = sorted(people[0].glob("*.jpg"))[:2], sorted(people[1].glob("*.jpg"))[:1]
    if len(first) < 2 or not second:
        raise ApplianceError(ErrorCode.SELFTEST_FAILED, f"self-test needs 2 + 1 images in {root}")
    return first[0], first[1], second[0]


def configured_images(config: Config) -> tuple[Path, Path, Path]:
    """The self-test's photos: from ``[ops] selftest_images``, else the shared data set."""
    return default_images(Path(config.ops.selftest_images) if config.ops.selftest_images else None)


def pack_selftest(config: Config, images: tuple[Path, Path, Path]) -> SelfTest:
    """A :data:`~appliance.ops.updates.SelfTest` for the packs under ``root/active``: the whole
    pipeline with the updated pack in its place (an embedder, a landmarker or a face detector)
    must find the faces and tell the two people apart. A liveness pack has no such test here."""

    def check(root: Path, pack_id: str) -> None:
        from appliance.capture.images import read_image
        from appliance.packs import PackRegistry
        from appliance.pipeline import FacePipeline
        from appliance.vision.templates import similarity

        registry = PackRegistry([Path(root) / ACTIVE, *paths.model_search_path(config.models.search_path)])
        pipeline_config, embedder = _with_pack(config, registry.get(pack_id))
        pipeline = FacePipeline(pipeline_config, registry, embedder_pack=embedder)
        try:
            pipeline.load()
            analyses = [pipeline.analyze(read_image(p)) for p in images]
            if any(a.aligned is None for a in analyses):
                raise ApplianceError(ErrorCode.SELFTEST_FAILED, "no face found in a self-test image")
            templates = [e.template for e in pipeline.extract(analyses)]
            size = pipeline.embedder_pack.embedding_size
            for template in templates:
                vector = template.vector
                if not np.all(np.isfinite(vector)) or (size and vector.shape != (size,)):
                    raise ApplianceError(ErrorCode.SELFTEST_FAILED, "template not finite or of the wrong size")
                if abs(float(np.linalg.norm(vector)) - 1.0) > UNIT_TOLERANCE:
                    raise ApplianceError(ErrorCode.SELFTEST_FAILED, "template not unit length")
            threshold = pipeline.threshold
            same, other = similarity(templates[0], templates[1]), similarity(templates[0], templates[2])
            if not same > threshold > other:
                raise ApplianceError(ErrorCode.SELFTEST_FAILED, "the same person and another are not told apart")
        finally:
            pipeline.close()

    return check


def _with_pack(config: Config, pack: ModelPack) -> tuple[Config, str | None]:
    """The configuration and embedder that put ``pack`` in the pipeline."""
    if pack.kind == EMBEDDING:
        return config, pack.id
    if pack.kind == LANDMARKS:
        return with_overrides(config, models={"landmarker": pack.id}), None
    if pack.kind == DETECTION:
        return with_overrides(config, models={"detector": YUNET, "fallback_detector": pack.id}), None
    raise ApplianceError(ErrorCode.SELFTEST_FAILED, f"{pack.label}: a {pack.kind} pack has no self-test on a "
                                                    "device; it is installed with the application, not updated")


def finish_interrupted_updates(config: Config) -> list[tuple[str, ApplianceError | None]]:
    """Self-test every pack whose update was cut short, before a service loads its models:
    confirmed if it passes, rolled back if not (the images are looked for only then). Each
    pack tested with its failure (None: confirmed); a failure is logged, not raised - the
    service starts on the version that is active again. A pack an update is installing or
    testing right now is waited for (``Slots.locked``), and then has nothing left to finish."""
    check = None
    outcomes: list[tuple[str, ApplianceError | None]] = []
    for pack in installed(updates_root(config)):
        with pack.locked() as slots:
            if not slots.settle():
                continue
            check = check or _selftest(config)
            label = f"{slots.id}@{slots.state().active}"
            try:
                run_selftest(slots, check)
            except ApplianceError as exc:
                log.error("an interrupted update is rolled back: %s", exc)
                outcomes.append((label, exc))
            else:
                log.warning("%s: an interrupted update is confirmed (its self-test passed)", label)
                outcomes.append((label, None))
    return outcomes


def _selftest(config: Config) -> SelfTest:
    """``pack_selftest`` on the configured photos; without them, one that fails (a version that
    cannot be tested is not kept)."""
    try:
        return pack_selftest(config, configured_images(config))
    except ApplianceError as missing:
        return _failing(missing)


def _failing(error: ApplianceError):
    def check(root: Path, pack_id: str) -> None:
        raise error

    return check
