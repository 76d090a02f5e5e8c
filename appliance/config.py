"""Typed configuration: dataclasses filled from a TOML file and checked on load.

A wrong key or value fails at start with a message naming the key and the allowed values,
never later in the middle of a door pass.
"""
from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode


@dataclass(frozen=True)
class QualityProfile:
    """Limits for the ISO/IEC 29794-5 style measures; see ``vision.quality``."""

    min_inter_eye_px: float = 30.0
    max_yaw_deg: float = 30.0
    max_pitch_deg: float = 30.0
    max_roll_deg: float = 25.0
    min_sharpness: float = 15.0
    min_brightness: float = 45.0
    max_brightness: float = 215.0
    min_contrast: float = 18.0
    max_clipped_fraction: float = 0.20
    max_eye_closure: float = 0.40
    min_landmarks_in_frame: float = 0.98
    max_other_faces: int = 0
    # template utility (raw feature norm / the pack's reference norm), judged after extraction
    min_utility: float = 0.80


@dataclass(frozen=True)
class ModelsConfig:
    search_path: tuple[str, ...] = ()
    landmarker: str = "mediapipe-face-landmarker"
    # "mediapipe" runs FaceLandmarker on the frame (best landmarks); "yunet" detects first
    # (many or far faces) and runs the landmarker on each crop.
    detector: str = "mediapipe"
    fallback_detector: str = "yunet-2026may"
    embedder: str = "w600k-mbf"


@dataclass(frozen=True)
class MatchingConfig:
    # Cosine-similarity thresholds by embedding pack id; a pack missing here uses the
    # threshold recommended in its manifest. ``appliance calibrate`` writes this table.
    thresholds: dict[str, float] = field(default_factory=dict)
    # Average the template of the aligned crop and of its mirror image (robust to pose).
    flip_fusion: bool = True


@dataclass(frozen=True)
class RuntimeConfig:
    threads: int = 2
    max_faces: int = 4


# Minimum audit retention (days) required by the operation-log rules (at least six months).
MIN_AUDIT_RETENTION_DAYS = 184


@dataclass(frozen=True)
class SecurityConfig:
    """Keys, retention, anti-replay and role assignments; see ``docs/security.md``."""

    node_id: str = "node-1"
    # "file": root-only key files in key_dir (default <data dir>/keys); "env": APPLIANCE_KEY_<NAME> (tests)
    key_provider: str = "file"
    key_dir: str = ""
    replay_window_s: float = 120.0
    template_retention_days: int = 1095
    event_retention_days: int = 30
    audit_retention_days: int = MIN_AUDIT_RETENTION_DAYS
    audit_checkpoint_every: int = 100
    # OS account -> role (system_administrator, security_administrator, auditor, operator)
    roles: dict[str, str] = field(default_factory=dict)


LIVENESS_LEVELS = ("off", "passive", "passive+motion", "active")
UNSUPPORTED_LIVENESS_LEVELS = ("active",)


@dataclass(frozen=True)
class LivenessConfig:
    """Presentation-attack detection; see appliance.liveness and docs/liveness.md."""

    # off | passive (model + image cues) | passive+motion (+ flat-plane/micro-motion over a
    # burst) | active (passive+motion + a random blink/turn/smile challenge)
    level: str = "passive+motion"
    pack: str = "minifasnet-silentface"
    # fusion weights and decision threshold, written by 'appliance liveness calibrate'
    # (relative paths are resolved against the repo root)
    calibration: str = "config/liveness-calibration.json"
    burst_frames: int = 5
    challenge_min: int = 1
    challenge_max: int = 3
    challenge_step_timeout_s: float = 4.0
    challenge_max_delay_s: float = 1.2  # random pause before each prompt (replay resistance)


LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class OpsConfig:
    """Operations: health limits, logs, backups, updates; see ``docs/operations.md``.
    Empty paths mean "below the data folder" (``APPLIANCE_DATA_DIR``)."""

    broker_host: str = "localhost"
    broker_port: int = 8883
    status_dir: str = ""  # daemons' status records (default <data>/run)
    disk_min_free_mb: int = 500
    cache_max_age_s: float = 3600.0  # a device cache older than this is reported stale
    session_idle_s: float = 600.0  # administrator sessions end after this much inactivity
    # "json" (one object a line, for journald/collectors) or "text"; empty: JSON for the
    # services and for commands writing to log_file, text for commands on stderr
    log_format: str = ""
    log_file: str = ""  # empty: stderr (journald under systemd); else every command and service
    log_level: str = ""  # debug|info|warning|error|critical; empty: warning (--debug: debug for appliance.*)
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    backup_dir: str = ""  # default <data>/backups
    backup_keep: int = 7
    models_root: str = ""  # signed packs installed side by side (default <data>/packs)
    publisher_keys_dir: str = "/etc/appliance/publishers"
    selftest_images: str = ""  # default <shared>/data/faces/celeba-dev


MATCHING_MODES = ("central", "local", "local-first")


@dataclass(frozen=True)
class DeviceConfig:
    """This door device: what ``appliance edge`` (and its systemd unit) runs with."""

    # the identity provisioned with 'appliance provision device NAME' (its certificate's CN)
    name: str = ""
    # "picamera2", a camera index ("0"), an rtsp/http URL, a video file or an image folder
    source: str = "0"
    fps: float = 0.0  # replay rate for files and folders (0: as fast as they decode)
    cool_down_s: float = 2.0  # frames are ignored for this long after a pass
    loop: bool = False  # files and folders replay from the start when they end (kiosk demos, tests)


@dataclass(frozen=True)
class MatcherConfig:
    """This matcher replica: what ``appliance matcher`` (and its systemd unit) runs with."""

    name: str = "matcher-1"  # its MQTT identity ('appliance provision matcher NAME')


@dataclass(frozen=True)
class OfflineConfig:
    """Offline operation and enrollment sync; see ``docs/offline.md``."""

    mode: str = "central"  # central | local | local-first
    answer_timeout_ms: int = 300  # central mode: decide from the cache after this long
    sync_wait_ms: int = 1000  # after a (re)connection, local decisions wait this long for catch-up
    max_cache_age_s: float = 86400.0  # local decisions refused when not confirmed current for longer (0: no limit)
    snapshot_after: int = 5000  # a device this many revisions behind gets a full snapshot
    outbox_max_events: int = 100_000  # bound; the oldest pending events are spilled beyond it
    outbox_window: int = 200  # events in flight (sent, not yet acknowledged by the matcher)
    outbox_resend_s: float = 5.0  # unacknowledged events are sent again after this long
    digest_every_s: float = 300.0  # devices report a cache digest this often


@dataclass(frozen=True)
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    quality_enrollment: QualityProfile = field(default_factory=QualityProfile)
    quality_verification: QualityProfile = field(
        default_factory=lambda: QualityProfile(
            min_inter_eye_px=20.0, max_yaw_deg=40.0, max_pitch_deg=35.0, max_roll_deg=35.0,
            min_sharpness=8.0, min_brightness=30.0, max_brightness=230.0, min_contrast=12.0,
            max_clipped_fraction=0.35, max_eye_closure=0.75, min_landmarks_in_frame=0.9,
            max_other_faces=3, min_utility=0.70,
        )
    )
    source: Path | None = None


ALLOWED_DETECTORS = ("mediapipe", "yunet")


def _convert(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise _bad(key, f"expected a table, got {type(value).__name__}")
        return _build(annotation, value, key)
    if origin is tuple:
        if not isinstance(value, list):
            raise _bad(key, "expected a list")
        return tuple(_convert(v, typing.get_args(annotation)[0], key) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(key, "expected a table")
        _, value_type = typing.get_args(annotation)
        return {str(k): _convert(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _convert(value, options[0], key)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(key, f"expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(key, f"expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise _bad(key, f"expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise _bad(key, f"expected a string, got {value!r}")
        return value
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    # Config.source is where the file was read from, not a key of it
    known = {f.name for f in dataclasses.fields(cls) if not (cls is Config and f.name == "source")}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise _bad(where, f"unknown key; allowed: {', '.join(sorted(known))}")
    defaults = cls()
    values = {}
    for name in known:
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            values[name] = _convert(data[name], hints[name], key)
        else:
            values[name] = getattr(defaults, name)
    return dataclasses.replace(defaults, **values)


def _bad(key: str, why: str) -> ApplianceError:
    return ApplianceError(ErrorCode.CONFIG_INVALID, f"{key}: {why}")


def validate(config: Config) -> Config:
    if config.models.detector not in ALLOWED_DETECTORS:
        raise _bad("models.detector", f"{config.models.detector!r} is not one of {ALLOWED_DETECTORS}")
    if not 1 <= config.runtime.threads <= 64:
        raise _bad("runtime.threads", "must be between 1 and 64")
    live = config.liveness
    if live.level not in LIVENESS_LEVELS:
        raise _bad("liveness.level", f"{live.level!r} is not one of {LIVENESS_LEVELS}")
    if live.level in UNSUPPORTED_LIVENESS_LEVELS:
        # the challenge runs in appliance.liveness.session but not yet inside the door's pass
        # loop; refusing the value here beats a door that would turn every visitor away
        raise _bad("liveness.level", f"{live.level!r} is not supported by the door yet; "
                   "use 'passive' or 'passive+motion'")
    if not 1 <= live.challenge_min <= live.challenge_max <= 3:
        raise _bad("liveness.challenge_min", "need 1 <= challenge_min <= challenge_max <= 3")
    if live.burst_frames < 1 or live.challenge_step_timeout_s <= 0:
        raise _bad("liveness.burst_frames", "burst_frames >= 1 and challenge_step_timeout_s > 0")
    for pack, threshold in config.matching.thresholds.items():
        if not -1.0 <= threshold <= 1.0:
            raise _bad(f"matching.thresholds.{pack}", "a cosine similarity between -1 and 1")
    _validate_device(config.device)
    if not _is_identity(config.matcher.name):
        raise _bad("matcher.name", f"{config.matcher.name!r} is not a valid identity ({IDENTITY_RULE})")
    _validate_security(config.security)
    _validate_ops(config.ops)
    _validate_offline(config.offline)
    return config


IDENTITY_RULE = "letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit"
_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SERVICES = ("edge", "matcher")


def _is_identity(name: str) -> bool:
    return bool(_IDENTITY.fullmatch(name))


def _validate_device(device: DeviceConfig) -> None:
    if device.name and not _is_identity(device.name):
        raise _bad("device.name", f"{device.name!r} is not a valid identity ({IDENTITY_RULE})")
    if not device.source.strip():
        raise _bad("device.source", "empty: give picamera2, a camera index, a URL, a video file or an image folder")
    if device.fps < 0 or device.cool_down_s < 0:
        raise _bad("device.fps", "fps and cool_down_s must not be negative")


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
    changed = config
    for section, values in sections.items():
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            table = getattr(changed, section)
            data = {**{f.name: getattr(table, f.name) for f in dataclasses.fields(table)}, **values}
            changed = dataclasses.replace(changed, **{section: _build(type(table), data, section)})
    return validate(changed) if changed is not config else config


def _validate_offline(offline: OfflineConfig) -> None:
    if offline.mode not in MATCHING_MODES:
        raise _bad("offline.mode", f"{offline.mode!r} is not one of {MATCHING_MODES}")
    for name in ("answer_timeout_ms", "snapshot_after", "outbox_max_events", "outbox_window"):
        if getattr(offline, name) < 1:
            raise _bad(f"offline.{name}", "must be at least 1")
    for name in ("outbox_resend_s", "digest_every_s"):
        if getattr(offline, name) <= 0:
            raise _bad(f"offline.{name}", "must be positive")
    if offline.sync_wait_ms < 0 or offline.max_cache_age_s < 0:
        raise _bad("offline.sync_wait_ms", "sync_wait_ms and max_cache_age_s must not be negative")


def _validate_security(security: SecurityConfig) -> None:
    if security.key_provider not in ("file", "env"):
        raise _bad("security.key_provider", f"{security.key_provider!r} is not one of ('file', 'env')")
    if security.audit_retention_days < MIN_AUDIT_RETENTION_DAYS:
        raise _bad("security.audit_retention_days", f"must be at least {MIN_AUDIT_RETENTION_DAYS}")
    for name in ("template_retention_days", "event_retention_days", "audit_checkpoint_every"):
        if getattr(security, name) < 1:
            raise _bad(f"security.{name}", "must be at least 1")
    if security.replay_window_s <= 0:
        raise _bad("security.replay_window_s", "must be positive")
    roles = ("system_administrator", "security_administrator", "auditor", "operator")
    for user, role in security.roles.items():
        if role not in roles:
            raise _bad(f"security.roles.{user}", f"{role!r} is not one of {roles}")


def _validate_ops(ops: OpsConfig) -> None:
    if ops.log_format and ops.log_format not in LOG_FORMATS:
        raise _bad("ops.log_format", f"{ops.log_format!r} is not one of {LOG_FORMATS}")
    if ops.log_level and ops.log_level.lower() not in LOG_LEVELS:
        raise _bad("ops.log_level", f"{ops.log_level!r} is not one of {LOG_LEVELS}")
    if not 1 <= ops.broker_port <= 65535:
        raise _bad("ops.broker_port", "must be between 1 and 65535")
    for name in ("disk_min_free_mb", "log_max_bytes", "log_backups", "backup_keep"):
        if getattr(ops, name) < 1:
            raise _bad(f"ops.{name}", "must be at least 1")
    for name in ("cache_max_age_s", "session_idle_s"):
        if getattr(ops, name) <= 0:
            raise _bad(f"ops.{name}", "must be positive")


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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise _bad(str(path), f"not valid TOML ({exc})") from None
    config = _build(Config, apply_env_overrides(data))
    return validate(dataclasses.replace(config, source=path))


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
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(tomlkit.dumps(document), encoding="utf-8")
    tmp.replace(path)
