"""The pack manifest (``manifest.toml``): what a model is, where it comes from, its licence.

Modelled on OpenCV Zoo (one folder per model) and InspireFace resource packs (the pack
carries its recommended threshold).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from appliance.errors import ApplianceError, ErrorCode

MANIFEST_NAME = "manifest.toml"
KINDS = ("landmarks", "detection", "embedding", "liveness")
SOURCE_TYPES = ("pypi", "search-path", "converted")
RUNTIMES = ("mediapipe-tasks", "opencv-dnn", "onnxruntime", "dlib", "litert")


@dataclass(frozen=True)
class PackSource:
    """Where the model file is obtained: a registry package or a model search-path folder."""

    type: str  # "pypi" | "search-path" | "converted"
    package: str = ""
    version: str = ""
    member: str = ""  # path inside the wheel
    relpath: str = ""  # path below a model search-path folder
    # "converted": a set-up script derives the file from ``inputs`` (search-path relpaths)
    script: str = ""
    inputs: tuple[str, ...] = ()
    input_sha256: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelPack:
    id: str
    version: str
    kind: str
    runtime: str
    licence: str
    commercial_use: bool
    summary: str
    file_name: str
    sha256: str
    source: PackSource
    directory: Path
    input: dict[str, Any] = field(default_factory=dict)
    embedding_size: int | None = None
    recommended_threshold: float | None = None
    threshold_note: str = ""
    # median raw feature norm on the calibration split: utility = norm / reference
    utility_reference_norm: float | None = None

    @property
    def label(self) -> str:
        return f"{self.id}@{self.version}"


def _require(table: dict[str, Any], key: str, where: Path) -> Any:
    if key not in table:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{where}: missing key {key!r}")
    return table[key]


def load_manifest(path: Path) -> ModelPack:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{path}: {exc}") from None
    pack = _require(data, "pack", path)
    model_file = _require(data, "file", path)
    source_table = dict(model_file.get("source", {"type": "search-path"}))
    for key in ("inputs", "input_sha256"):
        source_table[key] = tuple(source_table.get(key, ()))
    try:
        source = PackSource(**source_table)
    except TypeError as exc:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{path}: [file.source] {exc}") from None
    if source.type not in SOURCE_TYPES:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{path}: unknown source type {source.type!r}")
    kind = _require(pack, "kind", path)
    runtime = _require(pack, "runtime", path)
    if kind not in KINDS or runtime not in RUNTIMES:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{path}: kind/runtime {kind}/{runtime} unknown")
    thresholds = data.get("thresholds", {})
    return ModelPack(
        id=_require(pack, "id", path),
        version=_require(pack, "version", path),
        kind=kind,
        runtime=runtime,
        licence=_require(pack, "licence", path),
        commercial_use=bool(_require(pack, "commercial_use", path)),
        summary=pack.get("summary", ""),
        file_name=_require(model_file, "name", path),
        sha256=_require(model_file, "sha256", path).lower(),
        source=source,
        directory=path.parent,
        input=data.get("input", {}),
        embedding_size=data.get("output", {}).get("embedding_size"),
        recommended_threshold=thresholds.get("verify"),
        threshold_note=thresholds.get("note", ""),
        utility_reference_norm=data.get("quality", {}).get("utility_reference_norm"),
    )
