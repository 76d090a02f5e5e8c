"""The numerical check of a converted model file: what an export must reproduce.

A conversion's bytes differ between machines (float rounding while folding constants), so
a converted file is accepted when, run with ONNX Runtime on the pack's reference inputs, it
gives the outputs the original model gave, within the manifest's tolerance
(``[check]``, see ``appliance.packs.manifest``). The same check serves any conversion:
a lossy one (int8, TFLite) states a looser tolerance in its manifest.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.packs.converters import reference_inputs
from appliance.packs.manifest import ModelPack, NumericCheck

CHECK_THREADS = 1  # small and the same on every machine; the check is not timed


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    max_abs_error: float
    # largest |error| - (atol + rtol |expected|): <= 0 when every element is within tolerance
    worst_excess: float
    detail: str  # what failed, empty when passed
    min_cosine: float | None = None  # lowest per-sample cosine, when the check bounds it

    def summary(self, check: NumericCheck) -> str:
        cosine = "" if self.min_cosine is None else f", min cosine {self.min_cosine:.4f}"
        return f"max abs error {self.max_abs_error:.2e}{cosine} (tolerance {check.tolerance})"


def reference_feeds(check: NumericCheck) -> dict[str, np.ndarray]:
    """The reference inputs as float32 arrays, after confirming they are the recorded ones."""
    batches = reference_inputs.generate(check.generator, check.seed, check.samples, check.inputs)
    actual = reference_inputs.digest(batches)
    if actual != check.reference_sha256:
        raise ApplianceError(
            ErrorCode.PACK_CHECKSUM,
            f"reference inputs of generator {check.generator!r} seed {check.seed} have sha256 "
            f"{actual[:16]}..., the manifest recorded {check.reference_sha256[:16]}... (generator changed?)",
        )
    return {name: np.frombuffer(values, dtype=np.float32).reshape(shape) for name, (shape, values) in batches.items()}


def _session(model_file: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ApplianceError(ErrorCode.DEPENDENCY_MISSING, "onnxruntime (needed to check a converted model)") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = CHECK_THREADS
    options.inter_op_num_threads = CHECK_THREADS
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise ApplianceError(ErrorCode.PACK_CHECKSUM, f"{model_file}: not a loadable ONNX model ({exc})") from None


def compare(check: NumericCheck, outputs: dict[str, np.ndarray]) -> CheckResult:
    """Element-wise ``|actual - expected| <= atol + rtol * |expected|`` over every expected output."""
    max_error, worst, min_cosine = 0.0, -np.inf, None
    for name, values in check.expected.items():
        expected = np.asarray(values, dtype=np.float64)
        if name not in outputs:
            return CheckResult(False, float("inf"), float("inf"), f"the model has no output {name!r}")
        actual = np.asarray(outputs[name], dtype=np.float64)
        if actual.shape != expected.shape:
            return CheckResult(False, float("inf"), float("inf"),
                               f"output {name!r} has shape {actual.shape}, expected {expected.shape}")
        if not np.all(np.isfinite(actual)):
            return CheckResult(False, float("inf"), float("inf"), f"output {name!r} is not finite")
        error = np.abs(actual - expected)
        max_error = max(max_error, float(error.max()))
        worst = max(worst, float((error - (check.atol + check.rtol * np.abs(expected))).max()))
        if check.min_cosine is not None:
            rows, wanted = actual.reshape(len(actual), -1), expected.reshape(len(expected), -1)
            norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(wanted, axis=1)
            cosine = float(np.min((rows * wanted).sum(axis=1) / np.maximum(norms, np.finfo(np.float64).tiny)))
            min_cosine = cosine if min_cosine is None else min(min_cosine, cosine)
            worst = max(worst, check.min_cosine - cosine)
    passed = worst <= 0.0
    detail = "" if passed else f"outputs differ from the original model beyond tolerance {check.tolerance}"
    return CheckResult(passed, max_error, float(worst), detail, min_cosine)


def run_check(check: NumericCheck, model_file: Path) -> CheckResult:
    """Run ``model_file`` on the reference inputs and compare with the recorded outputs."""
    feeds = reference_feeds(check)
    session = _session(model_file)
    names = {i.name for i in session.get_inputs()}
    if names != set(feeds):
        return CheckResult(False, float("inf"), float("inf"),
                           f"model inputs {sorted(names)}, the check feeds {sorted(feeds)}")
    output_names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(output_names, feeds)
    except Exception as exc:  # shape or type mismatch inside the graph
        return CheckResult(False, float("inf"), float("inf"), f"the model failed on the reference inputs ({exc})")
    return compare(check, dict(zip(output_names, values)))


def verify(pack: ModelPack, model_file: Path) -> CheckResult:
    """The check's result; a one-line ``ApplianceError`` (exit 7) when the file fails it."""
    if pack.check is None:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{pack.label} has no [check]")
    result = run_check(pack.check, model_file)
    if not result.passed:
        raise ApplianceError(
            ErrorCode.PACK_CHECKSUM,
            f"{model_file}: numerical check failed: {result.detail}; {result.summary(pack.check)}",
        )
    return result
