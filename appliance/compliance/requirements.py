"""The requirement list as data: ``config/compliance/requirements.toml``, read and checked.

The rows live in a data file beside the configuration (shipped in the wheel like ``config/``)
so that a data protection officer can read, cite and amend them without reading code: each
row names its source clause, its text in English and Chinese, and the check that evaluates it
(``appliance.compliance.checks``). A row naming an unknown check, a duplicate id or a missing
field is refused with the row's id, before any evidence is gathered.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode

REQUIREMENTS_FILE = "config/compliance/requirements.toml"
MET, NOT_MET, NOT_APPLICABLE, NEEDS_DOCUMENT = "met", "not met", "not applicable", "needs a document"
STATUSES = (MET, NOT_MET, NOT_APPLICABLE, NEEDS_DOCUMENT)
# how a row's parts combine: the worst one decides (a failing test outweighs a missing document)
SEVERITY = {NOT_APPLICABLE: 0, MET: 1, NEEDS_DOCUMENT: 2, NOT_MET: 3}
CONDITION_OPS = (">=", "<=", ">", "<", "==", "in", "not in")
_TEXT_FIELDS = ("id", "area", "source", "en", "zh", "check")
# keys every row may carry beside its check's own parameters
COMMON_KEYS = frozenset({*_TEXT_FIELDS, "tests", "config", "show", "audit_actions", "doc", "reason", "action"})


@dataclass(frozen=True)
class Condition:
    """``key op value`` on the live configuration (``security.audit_retention_days >= 1096``)."""

    key: str
    op: str
    value: Any

    def describe(self) -> str:
        return f"{self.key} {self.op} {self.value}"


@dataclass(frozen=True)
class Requirement:
    id: str
    area: str
    source: str
    en: str
    zh: str
    check: str
    tests: tuple[str, ...] = ()
    config: tuple[Condition, ...] = ()
    show: tuple[str, ...] = ()
    audit_actions: tuple[str, ...] = ()
    docs: tuple[str, ...] = ()
    reason: str = ""
    action: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


@dataclass(frozen=True)
class RequirementList:
    meta: dict[str, str]
    areas: dict[str, str]
    rows: tuple[Requirement, ...]
    path: Path


def default_path() -> Path:
    """The shipped list (the checkout's file, or the copy inside an installed package)."""
    return paths.resource(REQUIREMENTS_FILE)


def _strings(row: dict, key: str, rid: str) -> tuple[str, ...]:
    value = row.get(key, [])
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement {rid}: {key} must be a list of names")
    return tuple(value)


def _conditions(row: dict, rid: str) -> tuple[Condition, ...]:
    found = []
    for item in row.get("config", ()):
        if not isinstance(item, dict) or set(item) != {"key", "op", "value"} or item["op"] not in CONDITION_OPS:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement {rid}: each config condition needs key, "
                                 f"op (one of {', '.join(CONDITION_OPS)}) and value")
        found.append(Condition(str(item["key"]), item["op"], item["value"]))
    return tuple(found)


def _requirement(row: dict, areas: dict[str, str], known_checks: frozenset[str]) -> Requirement:
    rid = str(row.get("id", "?"))
    missing = [k for k in _TEXT_FIELDS if not isinstance(row.get(k), str) or not row[k].strip()]
    if missing:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement {rid}: missing {', '.join(missing)}")
    if row["area"] not in areas:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement {rid}: area {row['area']!r} is not one of "
                             f"{', '.join(areas)}")
    if row["check"] not in known_checks:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement {rid}: unknown check {row['check']!r}; one of "
                             f"{', '.join(sorted(known_checks))}")
    return Requirement(
        id=rid, area=row["area"], source=row["source"], en=row["en"], zh=row["zh"], check=row["check"],
        tests=_strings(row, "tests", rid), config=_conditions(row, rid), show=_strings(row, "show", rid),
        audit_actions=_strings(row, "audit_actions", rid), docs=_strings(row, "doc", rid),
        reason=str(row.get("reason", "")), action=str(row.get("action", "")),
        params={k: v for k, v in row.items() if k not in COMMON_KEYS})


def load_requirements(known_checks: frozenset[str], path: Path | None = None) -> RequirementList:
    """Every row of the list, checked; CONFIG_INVALID names the first bad row."""
    path = Path(path) if path is not None else default_path()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement list {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement list {path}: {exc}") from None
    areas = {str(k): str(v) for k, v in document.get("areas", {}).items()}
    rows = tuple(_requirement(row, areas, known_checks) for row in document.get("requirement", ()))
    seen: set[str] = set()
    for row in rows:
        if row.id in seen:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement {row.id} appears twice in {path}")
        seen.add(row.id)
    if not rows:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"requirement list {path} has no [[requirement]] rows")
    return RequirementList({str(k): str(v) for k, v in document.get("meta", {}).items()}, areas, rows, path)


def worst(statuses: list[str]) -> str:
    """The status that decides a row made of several parts."""
    return max(statuses, key=SEVERITY.__getitem__) if statuses else MET
