"""Transaction-level evaluation (ISO/IEC 19795-1): what a person at the door experiences.

Per identity, its images in name order play a visit to the enrollment desk and then visits
to the door:

* enrollment - the images are judged one at a time by ``appliance.enrollment``'s own
  ``EnrollmentSession`` (3 attempts of 3 captures) under the enrollment profile, exactly as
  the enrollment desk does; the images it looked at are used for nothing else. No accepted
  capture in 3 attempts is a failure to enrol (FTE);
* door transactions - the remaining images form bursts of ``burst`` frames; a transaction is
  up to ``attempts`` bursts (a first try and the door's retries). Each burst is judged as
  ``edge.door_pass`` does: the best frame by quality (``vision.quality.best_frame``) under the
  verification profile, refused when it or its template's utility does not pass (a failed
  acquisition: the person tries again); else its template is compared at the threshold. A
  transaction with no acquired burst is a failure to acquire (FTA). A genuine transaction is
  accepted when any attempt matches (FRR counts rejections and FTAs, 19795-1's transaction
  FRR); an impostor transaction (every probe transaction against every *other* identity's
  enrollment) is accepted when any attempt matches: 1:1 with a claim (card + face), and 1:N
  against the gallery of every other enrolled identity, as a door without a card runs.

Rates carry 95 % Wilson intervals over transactions (impostor transactions of one person
are not independent, so the interval is narrower than the truth). Each image is analysed
once (measures and template); profiles are then re-judged from the measures, so the FTE of
every named enrollment profile comes from the same run.
"""
from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from appliance.capture.images import read_image
from appliance.config import QualityProfile
from appliance.config.quality_presets import PRESET_NAMES
from appliance.config.tables import quality_preset
from appliance.enrollment import EnrollmentSession
from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation import metrics
from appliance.evaluation.datasets import Sample, scan_identities
from appliance.pipeline import FacePipeline
from appliance.vision import quality
from appliance.vision.templates import Template

log = logging.getLogger(__name__)

BATCH = 16
DOOR_BURST_FRAMES = 3  # frames judged per pass at the door (edge.app MIN_BURST_FRAMES)
DOOR_ATTEMPTS = 2  # a first try and one retry per transaction
UTILITY = "utility"
CONTRACT_KEYS = ("fte_rate", "fta_rate", "frr", "far", "threshold", "transactions", "model")


@dataclass(frozen=True)
class ImageRecord:
    """One image analysed once: its measures (``None``: no face or unreadable) and template."""

    measures: dict[str, float] | None
    vector: np.ndarray | None


def analyse(pipeline: FacePipeline, samples: list[Sample], progress: bool = True) -> list[ImageRecord]:
    """Measures (utility included) and template of every image, in ``samples`` order."""
    records: list[ImageRecord] = [ImageRecord(None, None)] * len(samples)
    pending: list[tuple[int, object]] = []

    def flush() -> None:
        if pending:
            for (row, _), done in zip(pending, pipeline.extract([analysis for _, analysis in pending])):
                records[row] = ImageRecord(dict(done.analysis.quality.measures), done.template.vector)
            pending.clear()

    bar = tqdm(samples, desc="transaction", unit="img", disable=not progress or not sys.stderr.isatty(), leave=False)
    for row, sample in enumerate(bar):
        try:
            image = read_image(sample.path)
        except ApplianceError as exc:
            log.warning("%s", exc)
            continue
        analysis = pipeline.analyze(image)
        if analysis.aligned is not None:
            pending.append((row, analysis))
        if len(pending) >= BATCH:
            flush()
    flush()
    return records


def _judged(record: ImageRecord, profile: QualityProfile, with_utility: bool = True) -> quality.QualityReport:
    if record.measures is None:
        return quality.QualityReport({"faces": 0.0}, (quality.NO_FACE,), 0.0)
    measures = record.measures if with_utility else {k: v for k, v in record.measures.items() if k != UTILITY}
    return quality.judge(measures, profile)


@dataclass
class Identity:
    name: str
    enrolled: np.ndarray | None  # the fused reference; None = failure to enrol
    used: int  # images the enrollment looked at
    transactions: list[list[np.ndarray | None]]  # per transaction, per attempt: template or None (FTA)


def enrol(records: list[ImageRecord], profile: QualityProfile, pack: tuple[str, str]) -> tuple[np.ndarray | None, int]:
    """The enrollment policy over the images in order: (fused reference or None, images looked at)."""
    session = EnrollmentSession()
    used = 0
    for record in records:
        template = Template(record.vector, *pack) if record.vector is not None else None
        session.add(str(used), _judged(record, profile), template)
        used += 1
        if session.done:
            break
    result = session.result()
    return (result.template.vector if result.template is not None else None), used


def door_attempt(burst: list[ImageRecord], profile: QualityProfile) -> np.ndarray | None:
    """``edge.door_pass`` over one burst: the best frame's template, or None when it fails."""
    best = quality.best_frame([_judged(r, profile, with_utility=False) for r in burst])
    chosen = burst[best]
    if not _judged(chosen, profile, with_utility=False).passed or not _judged(chosen, profile).passed:
        return None
    return chosen.vector


def visits(samples: list[Sample], records: list[ImageRecord], enrollment: QualityProfile,
           verification: QualityProfile, pack: tuple[str, str], burst: int = DOOR_BURST_FRAMES,
           attempts: int = DOOR_ATTEMPTS) -> list[Identity]:
    """Each identity's enrollment and door transactions (incomplete trailing bursts unused)."""
    by_identity: dict[str, list[ImageRecord]] = {}
    for sample, record in zip(samples, records):
        by_identity.setdefault(sample.identity, []).append(record)
    out = []
    for name, own in by_identity.items():
        reference, used = enrol(own, enrollment, pack)
        rest = own[used:]
        bursts = [rest[i:i + burst] for i in range(0, len(rest) - burst + 1, burst)]
        tried = [[door_attempt(b, verification) for b in bursts[i:i + attempts]]
                 for i in range(0, len(bursts) - attempts + 1, attempts)]
        out.append(Identity(name, reference, used, tried))
    return out


@dataclass
class TransactionScores:
    """Best score over each transaction's acquired attempts (-inf: nothing acquired)."""

    genuine: np.ndarray  # per genuine transaction, against its own reference
    genuine_top_is_self: np.ndarray  # 1:N: the best candidate over the transaction's attempts is the person
    genuine_top: np.ndarray  # 1:N: the best gallery score
    impostor_claims: np.ndarray  # per (transaction, other enrolled identity)
    impostor_search: np.ndarray  # 1:N per transaction against every other enrolled identity
    acquired: np.ndarray  # per transaction of every identity: an attempt was acquired


def scores(people: list[Identity]) -> TransactionScores:
    enrolled = [p for p in people if p.enrolled is not None]
    if not enrolled:
        raise ApplianceError(ErrorCode.DATASET_INVALID, "nobody could be enrolled: no transaction to judge")
    gallery = np.stack([p.enrolled for p in enrolled])
    column = {p.name: i for i, p in enumerate(enrolled)}
    genuine, top_self, top, claims, search, acquired = [], [], [], [], [], []
    for person in people:
        own = column.get(person.name)
        for transaction in person.transactions:
            vectors = [v for v in transaction if v is not None]
            acquired.append(bool(vectors))
            if not vectors:  # an FTA: rejected as genuine, never accepted as impostor
                best = np.full(len(enrolled), -np.inf)
            else:
                best = (np.stack(vectors) @ gallery.T).max(axis=0)
            others = np.delete(best, own) if own is not None else best
            claims.append(others)
            search.append(others.max() if len(others) else -np.inf)
            if own is not None:
                genuine.append(best[own])
                top_self.append(bool(vectors) and int(np.argmax(best)) == own)
                top.append(best.max())
    return TransactionScores(np.array(genuine), np.array(top_self, bool), np.array(top),
                             np.concatenate(claims) if claims else np.zeros(0), np.array(search),
                             np.array(acquired, bool))


def _rate(errors: int, trials: int) -> tuple[float | None, list[float]]:
    low, high = metrics.wilson_interval(errors, trials)
    return (errors / trials if trials else None), [low, high]


def report(people: list[Identity], result: TransactionScores, threshold: float, model: dict,
           by_profile: dict[str, dict] | None = None) -> dict:
    """The report; ``CONTRACT_KEYS`` are a stable contract, intervals sit under ``ci95``."""
    failed_enrol = sum(p.enrolled is None for p in people)
    fte, fte_ci = _rate(failed_enrol, len(people))
    fta_errors = int(np.count_nonzero(~result.acquired))
    fta, fta_ci = _rate(fta_errors, len(result.acquired))
    rejected = int(np.count_nonzero(result.genuine < threshold))
    frr, frr_ci = _rate(rejected, len(result.genuine))
    accepted = int(np.count_nonzero(result.impostor_claims >= threshold))
    far, far_ci = _rate(accepted, len(result.impostor_claims))
    missed = int(np.count_nonzero(~(result.genuine_top_is_self & (result.genuine_top >= threshold))))
    frr_n, frr_n_ci = _rate(missed, len(result.genuine_top))
    found = int(np.count_nonzero(result.impostor_search >= threshold))
    far_n, far_n_ci = _rate(found, len(result.impostor_search))
    return {
        "fte_rate": fte,
        "fta_rate": fta,
        "frr": frr,
        "far": far,
        "threshold": float(threshold),
        "transactions": {"genuine": len(result.genuine), "impostor": len(result.impostor_claims),
                         "impostor_identification": len(result.impostor_search), "all": len(result.acquired)},
        "model": model,
        "ci95": {"fte_rate": fte_ci, "fta_rate": fta_ci, "frr": frr_ci, "far": far_ci},
        "identification": {"frr": frr_n, "far": far_n, "ci95": {"frr": frr_n_ci, "far": far_n_ci}},
        "counts": {"identities": len(people), "failed_to_enrol": failed_enrol, "failed_to_acquire": fta_errors,
                   "false_rejects": rejected, "false_accepts": accepted, "identification_misses": missed,
                   "identification_false_accepts": found},
        "fte_by_profile": {name: effect["fte_rate"] for name, effect in (by_profile or {}).items()},
        "enrollment_rejections_by_profile": {name: effect["rejections"] for name, effect in (by_profile or {}).items()},
        "confidence_intervals": "95 % Wilson score intervals over transactions",
    }


def calibrated_threshold(result: TransactionScores, target_far: float) -> float:
    """The lowest threshold whose 1:1 transaction FAR does not exceed ``target_far``."""
    finite = result.impostor_claims[np.isfinite(result.impostor_claims)]
    if not metrics.estimable(len(result.impostor_claims), target_far) or not len(finite):
        raise ApplianceError(ErrorCode.DATASET_INVALID, f"{len(result.impostor_claims)} impostor transactions "
                                                        f"are too few to calibrate at FAR {target_far:g}")
    padded = np.concatenate([finite, np.full(len(result.impostor_claims) - len(finite), -1.0)])
    return metrics.threshold_at_fmr(padded, target_far)


def _people(pipeline: FacePipeline, dataset: str, split: str, enrollment: QualityProfile, burst: int,
            attempts: int, profiles: dict[str, QualityProfile]) -> tuple[list[Identity], dict[str, dict]]:
    samples = scan_identities(dataset, split=split)
    records = analyse(pipeline, samples)
    pack = (pipeline.embedder_pack.id, pipeline.embedder_pack.version)
    people = visits(samples, records, enrollment, pipeline.config.quality_verification, pack, burst, attempts)
    by_identity: dict[str, list[ImageRecord]] = {}
    for sample, record in zip(samples, records):
        by_identity.setdefault(sample.identity, []).append(record)
    return people, {name: enrollment_profile_effect(list(by_identity.values()), profile, pack)
                    for name, profile in profiles.items()}


def enrollment_profile_effect(per_identity: list[list[ImageRecord]], profile: QualityProfile,
                              pack: tuple[str, str]) -> dict:
    """FTE under ``profile`` and how often each quality rule rejected a capture it judged."""
    failed, codes = 0, Counter()
    for own in per_identity:
        reference, used = enrol(own, profile, pack)
        failed += reference is None
        codes.update(code for record in own[:used] for code in _judged(record, profile).codes)
    return {"fte_rate": failed / len(per_identity), "rejections": dict(codes.most_common())}


def evaluate(pipeline: FacePipeline, dataset: str, model: dict, split: str = "all", calibrate_on: str | None = None,
             target_far: float = metrics.FMR_TARGETS["1e-3"], burst: int = DOOR_BURST_FRAMES,
             attempts: int = DOOR_ATTEMPTS, enrollment_preset: str = "") -> dict:
    """The report on ``split``; the threshold is the configured one, or the one that meets
    ``target_far`` on the ``calibrate_on`` split (no identity in both)."""
    if burst < 1 or attempts < 1:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, "a transaction needs at least one burst of one frame")
    config = pipeline.config
    enrollment = quality_preset(enrollment_preset) if enrollment_preset else config.quality_enrollment
    profiles = {"configured": config.quality_enrollment, **{name: quality_preset(name) for name in PRESET_NAMES}}
    if calibrate_on is not None:
        if calibrate_on == split or "all" in (split, calibrate_on):
            raise ApplianceError(ErrorCode.DATASET_INVALID, "calibrate on one split (a or b) and report on the other")
        calibration, _ = _people(pipeline, dataset, calibrate_on, enrollment, burst, attempts, {})
        threshold = calibrated_threshold(scores(calibration), target_far)
    else:
        threshold = pipeline.threshold
    people, by_profile = _people(pipeline, dataset, split, enrollment, burst, attempts, profiles)
    out = report(people, scores(people), threshold, model, by_profile)
    out.update({
        "dataset": str(dataset), "split": split, "burst_frames": burst, "attempts_per_transaction": attempts,
        "enrollment_profile": enrollment.preset or "configured",
        "threshold_source": (f"FAR {target_far:g} on split {calibrate_on}" if calibrate_on is not None
                             else "configured"),
    })
    return out
