"""Which ONNX Runtime execution provider runs a pack: the manifest's preference, this machine's offer.

A pack may list providers in order of preference (``[pack] providers``), for example
TensorRT, then CUDA, then the CPU: one ordered list serves a Jetson (whose onnxruntime-gpu
build offers the first two) and a Raspberry Pi (CPU only) without per-device manifests.
The first listed provider this onnxruntime build offers is chosen; when none is offered the
CPU runs the pack, unless the manifest says ``providers_required = true`` (a pack too slow
to be useful on the CPU), which is refused with a clear error instead.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError, ErrorCode
from appliance.packs import ModelPack

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"


def choose_providers(preferred: Sequence[str], available: Sequence[str], required: bool = False,
                     label: str = "model") -> list[str]:
    """The providers list for ``InferenceSession``: the first preferred one ``available`` offers,
    followed by the CPU (ONNX Runtime places operators the accelerator lacks on the CPU).

    No preference means the CPU. None of the preferred offered: the CPU, or an error when
    ``required``.
    """
    chosen = next((name for name in preferred if name in available), None)
    if chosen is None:
        if required:
            raise ApplianceError(
                ErrorCode.DEPENDENCY_MISSING,
                f"{label} requires one of {', '.join(preferred)}; this onnxruntime offers "
                f"{', '.join(available) or 'none'} (install the matching onnxruntime build, e.g. onnxruntime-gpu)",
            )
        chosen = CPU_PROVIDER
    return [chosen] if chosen == CPU_PROVIDER else [chosen, CPU_PROVIDER]


def pack_providers(pack: ModelPack | None, available: Sequence[str] | None = None) -> list[str]:
    """``choose_providers`` for ``pack``'s manifest against this onnxruntime (or ``available``)."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    preferred = pack.providers if pack is not None else ()
    label = pack.label if pack is not None else "model"
    return choose_providers(preferred, available, bool(pack and pack.providers_required), label)


def session_options(intra_op_threads: int) -> Any:
    """The options every pack's session shares: ``intra_op_threads`` for one operator, none
    across operators, warnings only, and no spinning threads (they fight MediaPipe's XNNPACK
    workers for the same cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # e.g. the embedder declares batch 1 but runs any batch size
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def create_session(model_file: Path, options: Any, pack: ModelPack | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the provider chosen for ``pack``; the choice is logged."""
    import onnxruntime as ort

    providers = pack_providers(pack)
    session = ort.InferenceSession(str(model_file), options, providers=providers)
    log.info("%s runs on %s (manifest prefers %s)", pack.label if pack else model_file.name,
             session.get_providers()[0], ", ".join(pack.providers) if pack and pack.providers else "the CPU")
    return session
