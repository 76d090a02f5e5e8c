"""Reading the configuration: a TOML file, ``APPLIANCE__SECTION__KEY`` overrides and command
flags, checked against ``appliance.config.tables`` by pydantic's ``TypeAdapter``; a refusal
is CONFIG_INVALID naming the key (``<section>.<key>: <why>``, unknown keys with the allowed
ones)."""
from __future__ import annotations

import dataclasses
import functools
import stat
import sys
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from appliance import paths
from appliance.durable_file import SHARED, write_durably
from appliance.config.quality_presets import expand_presets
from appliance.config.tables import SERVICES, Config, Refused
from appliance.errors import ApplianceError, ErrorCode

if TYPE_CHECKING:
    from appliance.packs.registry import PackRegistry


def _bad(key: str, why: str) -> ApplianceError:
    return ApplianceError(ErrorCode.CONFIG_INVALID, f"{key}: {why}")


@functools.cache
def _adapter() -> TypeAdapter[Config]:
    return TypeAdapter(Config)


def schema() -> dict[str, Any]:
    """JSON schema of the configuration file: every section and key with its type, default,
    bounds or allowed values, and description."""
    return _adapter().json_schema()


def _checked(data: dict[str, Any]) -> Config:
    """``data`` (a parsed file, keys of ``Config``) as a checked ``Config``, or CONFIG_INVALID
    naming the first wrong key."""
    if "source" in data:  # a field of Config, not a key of the file
        raise _bad("source", _unknown_key(()))
    try:
        return _adapter().validate_python(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise _bad(*_explain(error)) from None


def _table_keys(cls: Any) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(cls) if not (cls is Config and f.name == "source"))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """The bare type under ``Annotated`` and ``| None`` wrappers, and the metadata collected."""
    metadata: list[Any] = []
    while True:
        if typing.get_origin(annotation) is Annotated:
            for item in annotation.__metadata__:
                metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
            annotation = annotation.__origin__
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = options[0]
        else:
            return annotation, metadata


def _at(loc: tuple[Any, ...]) -> tuple[Any, list[Any]]:
    """The type and metadata of the key at ``loc`` (a path of table keys, dict keys and list
    indexes from the top of the file); ``(None, [])`` if the path leaves the schema."""
    annotation, metadata = Config, []
    for part in loc:
        if dataclasses.is_dataclass(annotation):
            annotation = _hints(annotation).get(part)
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) is tuple:
            annotation = typing.get_args(annotation)[0]
        else:
            annotation = None
        if annotation is None:
            return None, []
        annotation, metadata = _unwrap(annotation)
    return annotation, metadata


def _unknown_key(table_loc: tuple[Any, ...]) -> str:
    table, _ = _at(table_loc)
    return f"unknown key; allowed: {', '.join(_table_keys(table))}"


_EXPECTED = {
    "int_type": "an integer", "float_type": "a number", "bool_type": "true or false", "string_type": "a string",
    "dataclass_type": "a table", "dict_type": "a table", "tuple_type": "a list", "list_type": "a list",
}


def _bounds(metadata: list[Any]) -> str:
    """The bounds of a key in words ("" if it has none)."""
    ge, gt, le = (next((getattr(m, name) for m in metadata if getattr(m, name, None) is not None), None)
                  for name in ("ge", "gt", "le"))
    if ge is not None and le is not None:
        return f"must be between {ge} and {le}"
    parts = []
    if gt is not None:
        parts.append("must be positive" if gt == 0 else f"must be more than {gt}")
    elif ge is not None:
        parts.append("must not be negative" if ge == 0 else f"must be at least {ge}")
    if le is not None:
        parts.append(f"must be at most {le}")
    return " and ".join(parts)


def _explain(error: dict[str, Any]) -> tuple[str, str]:
    """A pydantic error as (key path, why) in this module's words."""
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    key = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in loc).replace(".[", "[")
    if kind == "unexpected_keyword_argument":
        return key, _unknown_key(loc[:-1])
    refused = error.get("ctx", {}).get("error")
    if kind == "value_error" and isinstance(refused, Refused):
        return (f"{key}.{refused.key}" if key and refused.key else refused.key or key), str(refused)
    if kind in _EXPECTED:
        got = type(value).__name__ if kind in ("dataclass_type", "dict_type") else repr(value)
        return key, f"expected {_EXPECTED[kind]}, got {got}"
    annotation, metadata = _at(loc)
    if kind == "literal_error" and typing.get_origin(annotation) is Literal:
        options = typing.get_args(annotation)
        named = tuple(o for o in options if o != "")
        return key, f"{value!r} is not one of {named}" + (" (or empty)" if "" in options else "")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and _bounds(metadata):
        return key, f"{_bounds(metadata)}, got {value!r}"
    return key, error["msg"][:1].lower() + error["msg"][1:]


def validate(config: Config) -> Config:
    """``config`` checked exactly as if it had been read from a file."""
    return dataclasses.replace(_checked(_data(config)), source=config.source)


def _data(config: Config) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    del data["source"]
    return data


def check_service(config: Config, service: str) -> Config:
    """What ``service`` needs beyond a valid file; the service and ``config check --service``
    both call this, so they refuse the same values with the same message."""
    if service not in SERVICES:
        raise _bad("service", f"{service!r} is not one of {SERVICES}")
    if service == "edge" and not config.device.name:
        raise _bad("device.name", "empty: set it to this door's provisioned identity "
                   "('appliance provision device NAME'), or pass --device")
    return config


def with_overrides(config: Config, **sections: dict[str, Any]) -> Config:
    """``config`` with command-line values replacing keys (``None`` values are ignored),
    validated again: a flag is checked exactly like the file's key."""
    data = _data(config)
    changed = False
    for section, values in sections.items():
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            data[section] = {**data[section], **values}
            changed = True
    return dataclasses.replace(_checked(data), source=config.source) if changed else config


ENV_OVERRIDE_PREFIX = "APPLIANCE__"


def apply_env_overrides(data: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``APPLIANCE__SECTION__KEY=value`` overrides ``[section] key`` (a fleet sets one host's
    broker address without editing files). The value is read as a TOML value (``8883``,
    ``true``, ``["a"]``), else as a string, and then checked like the file's."""
    import os

    environ = os.environ if environ is None else environ
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_OVERRIDE_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_OVERRIDE_PREFIX):].split("__")]
        if len(keys) < 2 or not all(keys):
            raise _bad(name, "use APPLIANCE__<SECTION>__<KEY>")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        table = merged
        for key in keys[:-1]:
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise _bad(name, f"{key} is not a table")
        table[keys[-1]] = value
    return merged


def load_config(path: Path | None = None) -> Config:
    """Load the config file (``APPLIANCE_CONFIG`` or ``config/appliance.toml``)."""
    path = path or paths.config_file()
    if not path.exists():
        raise ApplianceError(ErrorCode.FILE_NOT_FOUND, f"configuration file {path}")
    if path.is_dir():
        raise _bad(str(path), "a folder, not a configuration file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise _bad(str(path), f"not UTF-8 text (byte {exc.start}), so not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise _bad(str(path), f"not valid TOML ({exc})") from None
    data = expand_presets(apply_env_overrides(data))
    return dataclasses.replace(_with_licence_default(_checked(data), data), source=path)


def registry_for(config: Config) -> PackRegistry:
    """The model packs this configuration can use: its ``[models] search_path`` first, then the
    installation's folders (``paths.model_search_path``). Loads no model (and no OpenCV: the
    matcher and the pack commands need only the manifests)."""
    from appliance.packs.registry import PackRegistry

    return PackRegistry(paths.model_search_path(config.models.search_path))


def _with_licence_default(config: Config, data: dict[str, Any]) -> Config:
    """A site that declared its use and names no embedder gets the best pack that use allows
    (``appliance.packs.defaults``); an undeclared site keeps the table's default."""
    models = data.get("models")
    if not config.site.use or (isinstance(models, dict) and "embedder" in models):
        return config
    from appliance.packs.defaults import default_embedder

    chosen = default_embedder(registry_for(config).packs().values(), config.site.use)
    return dataclasses.replace(config, models=dataclasses.replace(config.models, embedder=chosen.id))


def threshold_for(config: Config, pack_id: str, recommended: float | None) -> float:
    """The decision threshold for an embedding pack: calibrated value, else the pack's."""
    if pack_id in config.matching.thresholds:
        return config.matching.thresholds[pack_id]
    if recommended is None:
        raise ApplianceError(
            ErrorCode.CONFIG_INVALID,
            f"no threshold for pack {pack_id!r}: run 'appliance calibrate DIR' or set "
            f"matching.thresholds.{pack_id}",
        )
    return recommended


def save_threshold(path: Path, pack_id: str, threshold: float, note: str) -> None:
    """Write a calibrated threshold into the config file, keeping its comments."""
    import tomlkit

    document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    matching = document.setdefault("matching", tomlkit.table())
    thresholds = matching.setdefault("thresholds", tomlkit.table())
    item = tomlkit.item(round(float(threshold), 6))
    item.comment(note)
    thresholds[pack_id] = item
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else SHARED  # its owner's choice stays
    write_durably(path, tomlkit.dumps(document).encode("utf-8"), mode)
