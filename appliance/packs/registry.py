"""Find packs along the model search path and hand out verified model files.

A third-party file is verified by its sha256; a converted file (whose bytes differ between
machines) by the pack's numerical check. Either runs once per file version (size, mtime).
"""
from __future__ import annotations

import logging
from pathlib import Path

from appliance.digests import sha256_file
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs import numeric_check
from appliance.packs.manifest import CONVERTED, MANIFEST_NAME, ModelPack, load_manifest

log = logging.getLogger(__name__)


class PackRegistry:
    """Packs found in ``search_path`` (first folder wins when two declare the same id)."""

    def __init__(self, search_path: list[Path]):
        self.search_path = search_path
        self._packs: dict[str, ModelPack] | None = None
        self._verified: dict[Path, tuple[int, int]] = {}
        self._checks: dict[Path, numeric_check.CheckResult] = {}

    def packs(self) -> dict[str, ModelPack]:
        if self._packs is None:
            found: dict[str, ModelPack] = {}
            for folder in self.search_path:
                if not folder.is_dir():
                    continue
                for manifest in sorted(folder.glob(f"*/{MANIFEST_NAME}")):
                    pack = load_manifest(manifest)
                    found.setdefault(pack.id, pack)
            self._packs = found
        return self._packs

    def get(self, pack_id: str) -> ModelPack:
        try:
            return self.packs()[pack_id]
        except KeyError:
            known = ", ".join(sorted(self.packs())) or "none"
            raise ApplianceError(
                ErrorCode.PACK_NOT_FOUND, f"{pack_id!r} (known: {known}; search path: "
                f"{', '.join(map(str, self.search_path))})"
            ) from None

    def candidates(self, pack: ModelPack) -> list[Path]:
        places = [pack.directory / pack.file_name]
        if pack.source.relpath:
            places += [folder / pack.source.relpath for folder in self.search_path]
        # where 'appliance models install' puts files taken from wheels: <folder>/<pack id>/<file>
        places += [folder / pack.id / pack.file_name for folder in self.search_path]
        return list(dict.fromkeys(places))

    def model_file(self, pack: ModelPack) -> Path:
        """The pack's model file, its sha256 (converted: numerical check) run once per file version."""
        for path in self.candidates(pack):
            if path.is_file():
                self._verify(pack, path)
                return path
        hints = {
            "pypi": "run 'appliance models install'",
            CONVERTED: "run 'appliance models convert' (scripts/bootstrap.sh does)",
        }
        hint = hints.get(pack.source.type, f"place {pack.source.relpath} in a model search-path folder")
        raise ApplianceError(ErrorCode.PACK_FILE_MISSING, f"{pack.label}: {pack.file_name} not found; {hint}")

    def _verify(self, pack: ModelPack, path: Path) -> None:
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        if self._verified.get(path) == stamp:
            return
        if pack.check is not None:
            self._checks[path] = numeric_check.verify(pack, path)
        else:
            actual = sha256_file(path)
            if actual != pack.sha256:
                raise ApplianceError(
                    ErrorCode.PACK_CHECKSUM, f"{path}: sha256 {actual[:16]}... expected {pack.sha256[:16]}..."
                )
        self._verified[path] = stamp
        if not pack.commercial_use:
            log.warning("model pack %s is licensed %s: not for commercial use", pack.label, pack.licence)

    def check_result(self, path: Path) -> numeric_check.CheckResult | None:
        """The numerical check that accepted ``path`` (converted packs), once ``model_file`` found it."""
        return self._checks.get(path)
