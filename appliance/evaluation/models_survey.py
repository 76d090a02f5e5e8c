"""Embedding packs side by side (docs/models.md): accuracy, speed, size and licence chain.

Every pack is measured the same way, by the project's own pipeline: thresholds at each
target FMR are set on split a (even-index identities) and the FNMR they give is reported
on split b (odd-index identities), so no figure comes from identities it was tuned on.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance import json_text
from appliance.config import Config, registry_for
from appliance.evaluation import metrics, verification
from appliance.evaluation.datasets import scan_identities
from appliance.evaluation.runner import DatasetTemplates, extract_dataset
from appliance.inference.embedder import create_embedder
from appliance.packs import ModelPack
from appliance.pipeline import FacePipeline

TIMING_FACES = 16  # aligned crops of split b timed per thread count
TIMING_ROUNDS = 5  # the median of these rounds is reported
TIMED_THREADS = (1, 2)
MEGABYTE = 1_000_000


@dataclass
class SplitTemplates:
    """The templates of both splits; ``report`` is split b, the identities never tuned on."""

    calibration: DatasetTemplates
    report: DatasetTemplates


def extract_splits(pipeline: FacePipeline, dataset: Path) -> SplitTemplates:
    return SplitTemplates(extract_dataset(pipeline, scan_identities(dataset, split="a")),
                          extract_dataset(pipeline, scan_identities(dataset, split="b")))


def calibrated_rates(calibration: verification.VerificationScores,
                     report: verification.VerificationScores) -> dict[str, dict | None]:
    """Per target FMR: the threshold set on the calibration split and the error rates it gives on
    the report split (its FMR there is measured, not assumed)."""
    rates: dict[str, dict | None] = {}
    for key, target in metrics.FMR_TARGETS.items():
        if not all(metrics.estimable(len(scores.impostor), target) for scores in (calibration, report)):
            rates[key] = None  # too few impostor pairs to set or check this point
            continue
        threshold = metrics.threshold_at_fmr(calibration.impostor, target)
        rates[key] = metrics.operating_point(report.genuine, report.impostor, threshold).as_dict()
    return rates


def time_embedder(pack: ModelPack, model_file: Path, crops: list[np.ndarray], threads: int,
                  flip_fusion: bool) -> float | None:
    """Median milliseconds per face (one face per call, as at the door) on ``threads`` threads."""
    if not crops:
        return None
    embedder = create_embedder(pack, model_file, threads)
    embedder.embed_crops(crops[:1], flip_fusion)  # warm-up: first-run allocations
    rounds = []
    for _ in range(TIMING_ROUNDS):
        start = time.perf_counter()
        for crop in crops:
            embedder.embed_crops([crop], flip_fusion)
        rounds.append((time.perf_counter() - start) * 1000 / len(crops))
    return float(statistics.median(rounds))


def licence_summary(pack: ModelPack) -> dict:
    chain = pack.licence_chain
    links = {} if chain is None else {
        name: {"licence": link.licence, "source": link.source, "commercial": link.commercial, "note": link.note}
        for name, link in chain.links().items()
    }
    return {"licence": pack.licence, "commercial_use": pack.commercial_use, "chain": links,
            "chain_verdict": chain.verdict if chain else "not recorded"}


def evaluate_templates(templates: SplitTemplates, seed: int = 0) -> dict:
    """Calibrated rates on split b plus its FTA/FTE and EER (the verification report's keys)."""
    calibration = verification.scores(templates.calibration, seed)
    report = verification.scores(templates.report, seed)
    fte, _, _ = verification.fte_rate(templates.report)
    eer, _ = metrics.equal_error_rate(report.genuine, report.impostor)
    acquired = templates.report.acquired
    return {
        "calibrated_on_a": calibrated_rates(calibration, report),
        "fta_rate": float(np.count_nonzero(~acquired) / max(1, len(acquired))),
        "fte_rate": fte,
        "eer": eer,
        "genuine_pairs": int(len(report.genuine)),
        "impostor_pairs": int(len(report.impostor)),
        "calibration_impostor_pairs": int(len(calibration.impostor)),
    }


def survey_pack(config: Config, pack_id: str, dataset: Path, seed: int = 0) -> tuple[dict, SplitTemplates]:
    """One row of the table (figures on split b, speed, size and licence of ``pack_id``) and the
    templates it was computed from."""
    pipeline = FacePipeline(config, embedder_pack=pack_id)
    try:
        templates = extract_splits(pipeline, dataset)
        pack = pipeline.embedder_pack
        model_file = pipeline.registry.model_file(pack)
        crops = _timing_crops(pipeline, templates.report)
    finally:
        pipeline.close()
    flip = config.matching.flip_fusion
    row = {"pack": pack.id, "version": pack.version, "embedding_size": pack.embedding_size,
           "size_mb": model_file.stat().st_size / MEGABYTE, "flip_fusion": flip,
           **evaluate_templates(templates, seed), **licence_summary(pack)}
    row["ms_per_face"] = {str(threads): time_embedder(pack, model_file, crops, threads, flip)
                          for threads in TIMED_THREADS}
    return row, templates


def _timing_crops(pipeline: FacePipeline, data: DatasetTemplates) -> list[np.ndarray]:
    from appliance.capture.images import read_image

    crops = []
    for sample, ok in zip(data.samples, data.acquired):
        if len(crops) >= TIMING_FACES:
            break
        if ok:
            analysis = pipeline.analyze(read_image(sample.path))
            if analysis.aligned is not None:
                crops.append(analysis.aligned)
    return crops


def survey(config: Config, dataset: Path, pack_ids: list[str], seed: int = 0) -> dict:
    """The table's rows, and for each commercially usable pack the enrollment-template ablation."""
    registry = registry_for(config)
    rows, ablations = [], {}
    for pack_id in pack_ids:
        row, templates = survey_pack(config, registry.get(pack_id).id, dataset, seed)
        rows.append(row)
        if row["commercial_use"]:
            ablations[row["pack"]] = template_ablation(templates)
    return {"dataset": str(dataset), "protocol": "thresholds at each FMR set on split a, FNMR reported on split b",
            "packs": rows, "template_ablation": ablations}


def write_report(result: dict, out: Path) -> list[Path]:
    """models.json (every figure) and models.md (the tables of docs/models.md) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    text = ["# Embedding packs on " + Path(result["dataset"]).name, "", result["protocol"] + ".", "",
            markdown_table(result)]
    for pack_id, rows in result["template_ablation"].items():
        text += ["", f"## {pack_id}: enrollment templates and gating (split b)", "", ablation_table(rows)]
    files = [out / "models.json", out / "models.md"]
    files[0].write_text(json_text.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    files[1].write_text("\n".join(text), encoding="utf-8")
    return files


CHAIN_LABELS = {"code": "code", "weights": "weights", "training_data": "data"}


def _short(licence: str) -> str:
    """The licence's name without its explanation: "CC0-1.0 / public domain (...)" -> "CC0-1.0"."""
    for separator in (" (", ":", " / "):
        licence = licence.split(separator)[0]
    return licence.strip()


def _pct(point: dict | None) -> str:
    return "n/a" if point is None else f"{100 * point['fnmr']:.2f} %"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def markdown_table(result: dict) -> str:
    """The table of docs/models.md, exactly as the command measured it."""
    lines = [
        "| pack | size MB | ms/face 1 thr | ms/face 2 thr | FNMR @FMR 1e-2 | FNMR @FMR 1e-3 | FNMR @FMR 1e-4 "
        "| FMR on b @1e-3 | FTA | FTE | EER | licence chain (commercial?) | commercial use |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in result["packs"]:
        rates = row["calibrated_on_a"]
        chain = row["chain"]
        links = "; ".join(f"{label}: {_short(chain[key]['licence'])} ({chain[key]['commercial']})"
                          for key, label in CHAIN_LABELS.items()) if chain else "not recorded"
        fmr_b = "n/a" if rates["1e-3"] is None else f"{rates['1e-3']['fmr']:.1e}"
        verdict = "yes" if row["commercial_use"] else "no"
        if row["commercial_use"] and row["chain_verdict"] != "yes":
            verdict = f"yes (chain: {row['chain_verdict']})"
        lines.append(
            f"| {row['pack']} | {row['size_mb']:.1f} | {_ms(row['ms_per_face']['1'])} | {_ms(row['ms_per_face']['2'])} "
            f"| {_pct(rates['1e-2'])} | {_pct(rates['1e-3'])} | {_pct(rates['1e-4'])} | {fmr_b} "
            f"| {100 * row['fta_rate']:.2f} % | {100 * row['fte_rate']:.2f} % | {100 * row['eer']:.2f} % "
            f"| {links} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


# -- what the best clean pack gains from enrollment templates and gating -------------------
ENROLLMENT_IMAGES = (1, 3, 5)  # images averaged into one enrollment template


def template_protocol(data: DatasetTemplates, images: int, gate: bool) -> verification.VerificationScores:
    """Probes against enrollment templates: each identity enrolls the mean of its first ``images``
    acquired images (with ``gate``: only those passing the enrollment quality profile); every
    other acquired image of every identity is a probe against every template."""
    labels = data.labels
    templates, template_labels, probe_rows = [], [], []
    for identity in dict.fromkeys(labels):
        rows = [int(r) for r in np.flatnonzero((labels == identity) & data.acquired)]
        candidates = [r for r in rows if data.enrollment_ok[r]] if gate else rows
        enrolled = candidates[:images]
        probes = [r for r in rows if r not in enrolled]
        if not enrolled or not probes:
            continue
        mean = data.vectors[enrolled].mean(axis=0)
        templates.append(mean / max(float(np.linalg.norm(mean)), np.finfo(np.float32).tiny))
        template_labels.append(identity)
        probe_rows += probes
    if not templates:  # nothing enrollable (e.g. no image passes the enrollment profile)
        return verification.VerificationScores(np.zeros(0, np.float32), np.zeros(0, np.float32))
    scores = data.vectors[probe_rows] @ np.array(templates).T
    same = labels[probe_rows][:, None] == np.array(template_labels)[None, :]
    return verification.VerificationScores(scores[same], scores[~same])


def _own_fnmr(result: verification.VerificationScores, target: float) -> float | None:
    if not metrics.estimable(len(result.impostor), target):
        return None
    threshold = metrics.threshold_at_fmr(result.impostor, target)
    return metrics.operating_point(result.genuine, result.impostor, threshold).fnmr


def template_ablation(templates: SplitTemplates) -> list[dict]:
    """One row per (enrollment images, gating): FNMR on split b at thresholds set on split a, the
    FMR those thresholds really give on b, and FNMR at b's own FMR 1e-3 (the calibration gap)."""
    rows = []
    for images in ENROLLMENT_IMAGES:
        for gate in (False, True):
            calibration = template_protocol(templates.calibration, images, gate)
            report = template_protocol(templates.report, images, gate)
            rows.append({"enrollment_images": images, "enrollment_gated": gate,
                         "calibrated_on_a": calibrated_rates(calibration, report),
                         "fnmr_at_own_fmr_1e-3": _own_fnmr(report, metrics.FMR_TARGETS["1e-3"]),
                         "genuine": int(len(report.genuine)), "impostor": int(len(report.impostor))})
    return rows


def ablation_table(rows: list[dict]) -> str:
    lines = ["| enrollment template | gated by enrollment profile | FNMR @1e-2 | FNMR @1e-3 (FMR on b) | FNMR @1e-4 "
             "| FNMR @ b's own FMR 1e-3 | genuine / impostor |", "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        rates = row["calibrated_on_a"]
        at3 = rates["1e-3"]
        own = row["fnmr_at_own_fmr_1e-3"]
        fmr_b = "" if at3 is None else " ({:.1e})".format(at3["fmr"])
        lines.append(
            f"| mean of {row['enrollment_images']} image(s) | {'yes' if row['enrollment_gated'] else 'no'} "
            f"| {_pct(rates['1e-2'])} | {_pct(at3)}{fmr_b} "
            f"| {_pct(rates['1e-4'])} | {'n/a' if own is None else f'{100 * own:.2f} %'} "
            f"| {row['genuine']} / {row['impostor']} |")
    return "\n".join(lines) + "\n"
