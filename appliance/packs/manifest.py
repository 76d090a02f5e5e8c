"""The pack manifest (``manifest.toml``): what a model is, where it comes from, its licence.

Modelled on OpenCV Zoo (one folder per model) and InspireFace resource packs (the pack
carries its recommended threshold).

How a model file is verified depends on where it comes from:

* ``pypi`` and ``search-path`` files are third-party bytes: ``[file].sha256`` is mandatory.
* ``converted`` files are derived at set-up from third-party weights, and the bytes of an
  export depend on the CPU (float rounding), so a converted file is verified by what can be
  reproduced, never by its own bytes: the sha256 of its inputs (``input_sha256``), the
  converter's pinned packages (``converter_requires``, exact ``name==version``) and a
  numerical check (``[check]``): reference inputs generated from a seed, the outputs the
  ORIGINAL model gave on them, and a tolerance. ``[file].sha256`` is refused there. The
  same schema serves any conversion (ONNX export, int8 quantisation, TFLite); a lossy one
  states a looser tolerance.

``[licence_chain]`` (code, weights, training_data: licence, source, commercial yes/no/unclear,
note) records why a pack may or may not be shipped; new embedding packs carry it, and a pack
declaring ``commercial_use = true`` is refused when a link forbids commercial use.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from appliance.errors import ApplianceError, ErrorCode
from appliance.packs.archive import ArchiveSource, load_archive

MANIFEST_NAME = "manifest.toml"
LANDMARKS, DETECTION, EMBEDDING, LIVENESS = "landmarks", "detection", "embedding", "liveness"
KINDS = (LANDMARKS, DETECTION, EMBEDDING, LIVENESS)
SOURCE_TYPES = ("pypi", "search-path", "converted")
RUNTIMES = ("mediapipe-tasks", "opencv-dnn", "onnxruntime", "dlib", "litert")
CONVERTED = "converted"
# converters are code run at set-up: only this package's modules, never one a manifest on
# some search-path folder names
CONVERTER_PACKAGE = "appliance.packs.converters"
CONVERTER_MODULE = re.compile(r"^appliance\.packs\.converters\.[a-z_][a-z0-9_]*$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
PROVIDER_SUFFIX = "ExecutionProvider"  # every ONNX Runtime execution provider's name ends so


def parse_pin(requirement: str) -> tuple[str, str]:
    """``"torch==2.13.0"`` -> ``("torch", "2.13.0")``; anything but an exact pin is refused."""
    match = PIN.match(requirement.strip())
    if match is None:
        raise ValueError(f"{requirement!r} is not an exact pin name==version")
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class NumericCheck:
    """``[check]``: run the model file on generated reference inputs, compare with ``expected``.

    An output passes when ``|actual - expected| <= atol + rtol * |expected|`` element-wise.
    """

    generator: str  # id in appliance.packs.converters.reference_inputs.GENERATORS
    seed: int
    samples: int
    inputs: dict[str, tuple[int, ...]]  # model input name -> per-sample shape
    expected: dict[str, list]  # model output name -> nested list, samples first
    atol: float
    rtol: float
    reference_sha256: str  # of the generated inputs: tells a generator drift from a model error
    # lossy conversions (int8): each sample's output row must also have at least this cosine
    # with the original's (an embedding's direction is what matching uses)
    min_cosine: float | None = None

    def spec(self) -> dict[str, Any]:
        """What a converter's ``--reference`` mode needs to generate the same inputs."""
        return {"generator": self.generator, "seed": self.seed, "samples": self.samples,
                "inputs": {name: list(shape) for name, shape in self.inputs.items()}}

    @property
    def tolerance(self) -> str:
        cosine = "" if self.min_cosine is None else f", cosine >= {self.min_cosine:g}"
        return f"atol {self.atol:g} + rtol {self.rtol:g}{cosine}"


VERDICTS = ("yes", "no", "unclear")
CHAIN_LINKS = ("code", "weights", "training_data")


@dataclass(frozen=True)
class LicenceLink:
    """One link of ``[licence_chain]``: the terms of the code, the weights or the training data."""

    licence: str
    source: str
    commercial: str  # "yes" | "no" | "unclear"
    note: str = ""


@dataclass(frozen=True)
class LicenceChain:
    """Who allows what: a model is only as usable as the weakest of its code, weights and data."""

    code: LicenceLink
    weights: LicenceLink
    training_data: LicenceLink

    def links(self) -> dict[str, LicenceLink]:
        return {name: getattr(self, name) for name in CHAIN_LINKS}

    @property
    def verdict(self) -> str:
        """The chain's commercial verdict: no when a link forbids it, unclear when one is unclear."""
        verdicts = {link.commercial for link in self.links().values()}
        return "no" if "no" in verdicts else "unclear" if "unclear" in verdicts else "yes"


@dataclass(frozen=True)
class PackSource:
    """Where the model file is obtained: a registry package, a search-path folder, a conversion."""

    type: str  # "pypi" | "search-path" | "converted"
    package: str = ""
    version: str = ""
    member: str = ""  # path inside the wheel
    relpath: str = ""  # path below a model search-path folder (converted: below the converted-model folder)
    # "converted": ``appliance models convert`` runs ``converter`` (a module of
    # appliance.packs.converters) in a venv holding exactly ``converter_requires`` on
    # ``inputs`` (search-path relpaths, each checked against ``input_sha256``)
    converter: str = ""
    converter_requires: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    input_sha256: tuple[str, ...] = ()
    # quantising converters: a labelled-image folder below the shared data folder and the split
    # whose identities calibrate (aligned crops made by the appliance, passed as --calibration)
    calibration: str = ""
    calibration_split: str = "a"
    # converted packs whose inputs come from a registry tarball (npm): 'appliance models
    # install' fetches it (pinned URL + sha512 integrity) and extracts ``members`` as ``inputs``
    archive: ArchiveSource | None = None


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
    sha256: str  # "" for converted packs, which carry ``check`` instead
    source: PackSource
    directory: Path
    input: dict[str, Any] = field(default_factory=dict)
    embedding_size: int | None = None
    recommended_threshold: float | None = None
    threshold_note: str = ""
    # median raw feature norm on the calibration split: utility = norm / reference
    utility_reference_norm: float | None = None
    check: NumericCheck | None = None  # converted packs only
    licence_chain: LicenceChain | None = None  # [licence_chain]; older manifests may lack it
    # ONNX Runtime execution providers in order of preference (appliance/inference/providers.py)
    providers: tuple[str, ...] = ()
    providers_required: bool = False  # refuse to fall back to the CPU when none is offered

    @property
    def label(self) -> str:
        return f"{self.id}@{self.version}"


def _require(table: dict[str, Any], key: str, where: Path) -> Any:
    if key not in table:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{where}: missing key {key!r}")
    return table[key]


def _invalid(where: Path, detail: str) -> ApplianceError:
    return ApplianceError(ErrorCode.PACK_INVALID, f"{where}: {detail}")


def _load_source(model_file: dict[str, Any], path: Path) -> PackSource:
    source_table = dict(model_file.get("source", {"type": "search-path"}))
    for key in ("inputs", "input_sha256", "converter_requires"):
        source_table[key] = tuple(source_table.get(key, ()))
    source_table["input_sha256"] = tuple(s.lower() for s in source_table["input_sha256"])
    archive_table = source_table.pop("archive", None)
    try:
        source = PackSource(**source_table)
    except TypeError as exc:
        raise _invalid(path, f"[file.source] {exc}") from None
    if archive_table is not None:
        if source.type != CONVERTED:
            raise _invalid(path, "[file.source.archive] holds the inputs of a converted pack")
        try:
            source = replace(source, archive=load_archive(archive_table, len(source.inputs)))
        except ValueError as exc:
            raise _invalid(path, str(exc)) from None
    if source.type not in SOURCE_TYPES:
        raise _invalid(path, f"unknown source type {source.type!r}")
    if source.type == CONVERTED:
        if not (source.converter and source.relpath and source.inputs):
            raise _invalid(path, "a converted source needs converter, relpath and inputs")
        if len(source.inputs) != len(source.input_sha256) or not all(map(SHA256_HEX.match, source.input_sha256)):
            raise _invalid(path, "input_sha256 must give one sha256 per input")
        if not CONVERTER_MODULE.match(source.converter):
            raise _invalid(path, f"converter {source.converter!r} is not a module of {CONVERTER_PACKAGE}")
        if source.calibration_split not in ("a", "b"):
            raise _invalid(path, "calibration_split must be a or b")
        if not source.converter_requires:
            raise _invalid(path, "a converted source needs converter_requires (exact pins)")
        for requirement in source.converter_requires:
            try:
                parse_pin(requirement)
            except ValueError as exc:
                raise _invalid(path, f"converter_requires: {exc}") from None
    return source


def _load_check(table: dict[str, Any], path: Path) -> NumericCheck:
    try:
        check = NumericCheck(
            generator=str(table["generator"]),
            seed=int(table["seed"]),
            samples=int(table["samples"]),
            inputs={str(name): tuple(int(v) for v in shape) for name, shape in table["inputs"].items()},
            expected={str(name): list(values) for name, values in table["expected"].items()},
            atol=float(table["atol"]),
            rtol=float(table["rtol"]),
            reference_sha256=str(table["reference_sha256"]).lower(),
            min_cosine=float(table["min_cosine"]) if "min_cosine" in table else None,
        )
    except KeyError as exc:
        raise _invalid(path, f"[check] missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise _invalid(path, f"[check] {exc}") from None
    if check.samples < 1 or not check.inputs or not check.expected:
        raise _invalid(path, "[check] needs samples >= 1, inputs and expected outputs")
    if check.min_cosine is not None and not -1.0 <= check.min_cosine <= 1.0:
        raise _invalid(path, "[check] min_cosine must be in [-1, 1]")
    if check.atol < 0 or check.rtol < 0:
        raise _invalid(path, "[check] atol and rtol must be >= 0")
    if not SHA256_HEX.match(check.reference_sha256):
        raise _invalid(path, "[check] reference_sha256 is not a sha256")
    for name, values in check.expected.items():
        if len(values) != check.samples:
            raise _invalid(path, f"[check.expected] {name}: {len(values)} samples, samples = {check.samples}")
    return check


def _load_integrity(data: dict[str, Any], model_file: dict[str, Any], source: PackSource,
                    path: Path) -> tuple[str, NumericCheck | None]:
    """(sha256, check): a sha256 for third-party bytes, a numerical check for converted files."""
    if source.type != CONVERTED:
        if "check" in data:
            raise _invalid(path, "[check] is for converted packs; this file is verified by sha256")
        return _require(model_file, "sha256", path).lower(), None
    if "sha256" in model_file:
        raise _invalid(path, "a converted file is verified by [check], not by [file].sha256 "
                             "(the bytes of an export depend on the CPU)")
    return "", _load_check(_require(data, "check", path), path)


def _load_chain(data: dict[str, Any], commercial_use: bool, path: Path) -> LicenceChain | None:
    table = data.get("licence_chain")
    if table is None:
        return None
    links = {}
    for name in CHAIN_LINKS:
        link = table.get(name)
        if not isinstance(link, dict):
            raise _invalid(path, f"[licence_chain.{name}] missing")
        try:
            links[name] = LicenceLink(**link)
        except TypeError as exc:
            raise _invalid(path, f"[licence_chain.{name}] {exc}") from None
        if links[name].commercial not in VERDICTS:
            raise _invalid(path, f"[licence_chain.{name}] commercial must be one of {VERDICTS}")
    chain = LicenceChain(**links)
    # an "unclear" link may stand under a commercial pack (the caveat is published with it);
    # a link that forbids commercial use may not
    if commercial_use and chain.verdict == "no":
        raise _invalid(path, "commercial_use = true but a [licence_chain] link forbids commercial use")
    return chain


def _load_providers(pack: dict[str, Any], runtime: str, path: Path) -> tuple[str, ...]:
    providers = pack.get("providers", [])
    if not isinstance(providers, list) or not all(isinstance(p, str) and p.endswith(PROVIDER_SUFFIX)
                                                  for p in providers):
        raise _invalid(path, f"providers must be a list of ONNX Runtime provider names (*{PROVIDER_SUFFIX})")
    if (providers or pack.get("providers_required")) and runtime != "onnxruntime":
        raise _invalid(path, f"providers are for onnxruntime packs, this one runs on {runtime}")
    if pack.get("providers_required") and not providers:
        raise _invalid(path, "providers_required = true needs a providers list")
    return tuple(providers)


def load_manifest(path: Path) -> ModelPack:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{path}: {exc}") from None
    pack = _require(data, "pack", path)
    model_file = _require(data, "file", path)
    source = _load_source(model_file, path)
    sha256, check = _load_integrity(data, model_file, source, path)
    kind = _require(pack, "kind", path)
    runtime = _require(pack, "runtime", path)
    if kind not in KINDS or runtime not in RUNTIMES:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{path}: kind/runtime {kind}/{runtime} unknown")
    thresholds = data.get("thresholds", {})
    commercial_use = bool(_require(pack, "commercial_use", path))
    return ModelPack(
        id=_require(pack, "id", path),
        version=_require(pack, "version", path),
        kind=kind,
        runtime=runtime,
        licence=_require(pack, "licence", path),
        commercial_use=commercial_use,
        summary=pack.get("summary", ""),
        file_name=_require(model_file, "name", path),
        sha256=sha256,
        source=source,
        directory=path.parent,
        input=data.get("input", {}),
        embedding_size=data.get("output", {}).get("embedding_size"),
        recommended_threshold=thresholds.get("verify"),
        threshold_note=thresholds.get("note", ""),
        utility_reference_norm=data.get("quality", {}).get("utility_reference_norm"),
        check=check,
        licence_chain=_load_chain(data, commercial_use, path),
        providers=_load_providers(pack, runtime, path),
        providers_required=bool(pack.get("providers_required", False)),
    )
