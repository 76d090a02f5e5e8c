"""The tables of the configuration file: one frozen dataclass each, one field a key.

Each field's ``Annotated[..., Field(...)]`` carries its type, bounds or allowed values and
description; a rule joining two keys is a validator on its table. Nothing here runs when code
builds a table (or ``dataclasses.replace``s one): ``appliance.config.loading`` checks a file, a
flag or an environment override against these declarations.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict, model_validator
from pydantic.json_schema import SkipJsonSchema

# Strict scalars: a TOML value of another type is refused, never converted.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # an integer is accepted and stored as a float
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


class _Table:
    """A table of the file: it refuses keys it does not know (the message lists the ones it does)."""

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")


class Refused(ValueError):
    """A refusal by one of this module's rules; ``key`` names the key inside the checked table
    (a rule joining two keys is checked on the table)."""

    def __init__(self, why: str, key: str = ""):
        super().__init__(why)
        self.key = key


IDENTITY_RULE = "letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit"
_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SERVICES = ("edge", "matcher")


def _is_identity(name: str) -> bool:
    return bool(_IDENTITY.fullmatch(name))


def _ordered(low: str, high: str, why: str) -> Any:
    """The rule ``low <= high`` between two keys of a table, refused under the name of ``low``."""
    def check(table: Any) -> Any:
        if getattr(table, low) > getattr(table, high):
            raise Refused(why, low)
        return table
    return model_validator(mode="after")(check)


def _identity_required(name: str) -> str:
    if not _is_identity(name):
        raise Refused(f"{name!r} is not a valid identity ({IDENTITY_RULE})")
    return name


def _identity(name: str) -> str:
    return _identity_required(name) if name else name


def _lowercase(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _not_blank(source: str) -> str:
    if not source.strip():
        raise Refused("empty: give picamera2, a camera index, a URL, a video file or an image folder")
    return source


# an MQTT identity (a certificate's CN), or empty: not set
Identity = Annotated[Str, AfterValidator(_identity), Field(json_schema_extra={"pattern": f"^({_IDENTITY.pattern})?$"})]
# a fraction of something: 0..1
Fraction = Annotated[Float, Field(ge=0.0, le=1.0)]
Degrees = Annotated[Float, Field(ge=0.0, le=180.0)]
Grey = Annotated[Float, Field(ge=0.0, le=255.0)]  # an 8-bit grey level


@dataclass(frozen=True)
class QualityProfile(_Table):
    """Limits for the ISO/IEC 29794-5 style measures; see ``vision.quality``."""

    min_inter_eye_px: Annotated[Float, Field(ge=0.0, description="least distance between the eye centres, pixels")] \
        = 30.0
    max_yaw_deg: Annotated[Degrees, Field(description="largest head turn left/right, degrees")] = 30.0
    max_pitch_deg: Annotated[Degrees, Field(description="largest head tilt up/down, degrees")] = 30.0
    max_roll_deg: Annotated[Degrees, Field(description="largest in-plane head tilt, degrees")] = 25.0
    min_sharpness: Annotated[Float, Field(ge=0.0, description="least sharpness (variance of the Laplacian)")] = 15.0
    min_brightness: Annotated[Grey, Field(description="least mean grey level of the face (0-255)")] = 45.0
    max_brightness: Annotated[Grey, Field(description="largest mean grey level of the face (0-255)")] = 215.0
    min_contrast: Annotated[Float, Field(ge=0.0, description="least grey-level standard deviation of the face")] \
        = 18.0
    max_clipped_fraction: Annotated[Fraction, Field(description="largest share of under/over-exposed face pixels")] \
        = 0.20
    max_eye_closure: Annotated[Fraction, Field(description="largest eye closure (0 open, 1 shut)")] = 0.40
    min_landmarks_in_frame: Annotated[Fraction, Field(description="least share of face landmarks inside the frame")] \
        = 0.98
    max_other_faces: Annotated[Int, Field(ge=0, description="other faces tolerated in the frame")] = 0
    min_utility: Annotated[Float, Field(ge=0.0, description=(
        "least template utility: raw feature norm / the pack's reference norm, judged after extraction"))] = 0.80

    _brightness_range = _ordered("min_brightness", "max_brightness", "need min_brightness <= max_brightness")


ALLOWED_DETECTORS = ("mediapipe", "yunet")


@dataclass(frozen=True)
class ModelsConfig(_Table):
    search_path: Annotated[tuple[Str, ...], Field(description=(
        "extra folders with model packs (the repo's models/ and $APPLIANCE_SHARED_DATA/models are always "
        "searched)"))] = ()
    landmarker: Annotated[Str, Field(description="face landmarker pack id")] = "mediapipe-face-landmarker"
    detector: Annotated[Literal[ALLOWED_DETECTORS], Field(description=(
        "'mediapipe' runs FaceLandmarker on the frame (best landmarks); 'yunet' detects first (many or far faces) "
        "and runs the landmarker on each crop"))] = "mediapipe"
    fallback_detector: Annotated[Str, Field(description="face detector pack id used by 'yunet'")] = "yunet-2026may"
    embedder: Annotated[Str, Field(description="embedding (template) pack id")] = "w600k-mbf"


@dataclass(frozen=True)
class MatchingConfig(_Table):
    thresholds: Annotated[dict[str, Annotated[Float, Field(ge=-1.0, le=1.0)]], Field(description=(
        "cosine-similarity threshold (-1..1) by embedding pack id; a pack missing here uses the threshold "
        "recommended in its manifest ('appliance calibrate' writes this table)"))] = field(default_factory=dict)
    flip_fusion: Annotated[Bool, Field(description=(
        "average the templates of the aligned crop and of its mirror image (robust to pose)"))] = True


@dataclass(frozen=True)
class RuntimeConfig(_Table):
    threads: Annotated[Int, Field(ge=1, le=64, description="inference threads")] = 2
    max_faces: Annotated[Int, Field(ge=1, description="faces looked at in one frame")] = 4


# Minimum audit retention (days) required by the operation-log rules (at least six months).
MIN_AUDIT_RETENTION_DAYS = 184
ROLES_REMOVED = (
    "[security.roles] was removed: roles belong to appliance accounts now, not to OS users. Delete the table, "
    "then create an account for each person ('appliance admin bootstrap', 'appliance admin add NAME --role R') "
    "and a token for the nightly maintenance ('appliance admin token create --scope maintenance'; "
    "docs/operations.md)")


@dataclass(frozen=True)
class SecurityConfig(_Table):
    """Keys, retention and anti-replay; see ``docs/security.md`` (roles belong to accounts)."""

    node_id: Annotated[Str, Field(description="this host's name in signed records")] = "node-1"
    key_provider: Annotated[Literal["file", "env"], Field(description=(
        "'file': root-only key files in key_dir; 'env': APPLIANCE_KEY_<NAME> variables (tests only)"))] = "file"
    key_dir: Annotated[Str, Field(description="folder of the key files; empty: <data dir>/keys")] = ""
    replay_window_s: Annotated[Float, Field(gt=0, description=(
        "envelopes sealed longer ago (or further ahead) than this are rejected, seconds"))] = 120.0
    template_retention_days: Annotated[Int, Field(ge=1, description=(
        "templates not re-enrolled for this long are crypto-shredded, days"))] = 1095
    event_retention_days: Annotated[Int, Field(ge=1, description="access events are kept this long, days")] = 30
    audit_retention_days: Annotated[Int, Field(ge=MIN_AUDIT_RETENTION_DAYS, description=(
        f"the operation log is kept this long, days (at least {MIN_AUDIT_RETENTION_DAYS}: six months)"))] \
        = MIN_AUDIT_RETENTION_DAYS
    audit_checkpoint_every: Annotated[Int, Field(ge=1, description="audit entries between signed checkpoints")] = 100
    audit_head_max_age_s: Annotated[Float, Field(ge=60, le=86400, description=(
        "a running site re-signs the audit log's head every third of this; 'appliance audit verify' fails on an "
        "older head (a rolled-back log, or nothing anchoring it), seconds"))] = 300.0

    @model_validator(mode="before")
    @classmethod
    def _no_os_roles(cls, data: Any) -> Any:
        """``[security.roles]`` (OS account -> role) is gone: a role from an OS or environment
        name let ``LOGNAME=alice`` act as alice. Say so, rather than "unknown key"."""
        # a dataclass table is validated from its call arguments (pydantic's ArgsKwargs)
        given = data if isinstance(data, dict) else getattr(data, "kwargs", None)
        if isinstance(given, dict) and "roles" in given:
            raise Refused(ROLES_REMOVED, "roles")
        return data


LIVENESS_LEVELS = ("off", "passive", "passive+motion", "active")


@dataclass(frozen=True)
class LivenessConfig(_Table):
    """Presentation-attack detection; see appliance.liveness and docs/liveness.md."""

    level: Annotated[Literal[LIVENESS_LEVELS], Field(description=(
        "off | passive (model + image cues) | passive+motion (+ flat-plane/micro-motion over a burst) | "
        "active (passive+motion + a random blink/turn/smile challenge)"))] = "passive+motion"
    pack: Annotated[Str, Field(description="presentation-attack detection pack id")] = "minifasnet-silentface"
    calibration: Annotated[Str, Field(description=(
        "fusion weights and decision threshold written by 'appliance liveness calibrate' (a relative path is "
        "resolved against the repo root)"))] = "config/liveness-calibration.json"
    burst_frames: Annotated[Int, Field(ge=1, description="frames judged together for motion cues")] = 5
    challenge_min: Annotated[Int, Field(ge=1, le=3, description="least challenge steps of an active pass")] = 1
    challenge_max: Annotated[Int, Field(ge=1, le=3, description="most challenge steps of an active pass")] = 3
    challenge_step_timeout_s: Annotated[Float, Field(gt=0, description=(
        "time to perform one challenge step, seconds"))] = 4.0
    challenge_max_delay_s: Annotated[Float, Field(ge=0, description=(
        "longest random pause before each prompt (replay resistance), seconds"))] = 1.2

    _challenge_range = _ordered("challenge_min", "challenge_max", "need 1 <= challenge_min <= challenge_max <= 3")


LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_LOG_FORMAT_OR_EMPTY = ("", *LOG_FORMATS)
_LOG_LEVEL_OR_EMPTY = ("", *LOG_LEVELS)


@dataclass(frozen=True)
class OpsConfig(_Table):
    """Operations: health limits, logs, backups, updates; see ``docs/operations.md``.
    Empty paths mean "below the data folder" (``APPLIANCE_DATA_DIR``)."""

    broker_host: Annotated[Str, Field(description="the MQTT broker's host name")] = "localhost"
    broker_port: Annotated[Int, Field(ge=1, le=65535, description="the MQTT broker's TLS port")] = 8883
    status_dir: Annotated[Str, Field(description="the daemons' status records; empty: <data>/run")] = ""
    disk_min_free_mb: Annotated[Int, Field(ge=1, description="health fails below this much free disk, MB")] = 500
    cache_max_age_s: Annotated[Float, Field(gt=0, description=(
        "a device cache older than this is reported stale, seconds"))] = 3600.0
    session_idle_s: Annotated[Float, Field(gt=0, description=(
        "administrator sessions end after this much inactivity, seconds"))] = 600.0
    log_format: Annotated[Literal[_LOG_FORMAT_OR_EMPTY], Field(description=(
        "'json' (one object a line, for journald/collectors) or 'text'; empty: JSON for the services and for "
        "commands writing to log_file, text for commands on stderr"))] = ""
    log_file: Annotated[Str, Field(description=(
        "log file of every command and service; empty: stderr (journald under systemd)"))] = ""
    log_level: Annotated[Literal[_LOG_LEVEL_OR_EMPTY], BeforeValidator(_lowercase), Field(description=(
        "debug | info | warning | error | critical (any case); empty: warning (--debug: debug for appliance.*)"))] \
        = ""
    log_max_bytes: Annotated[Int, Field(ge=1, description="a log file is rotated at this size, bytes")] \
        = 10 * 1024 * 1024
    log_backups: Annotated[Int, Field(ge=1, description="rotated log files kept")] = 5
    backup_dir: Annotated[Str, Field(description="backups folder; empty: <data>/backups")] = ""
    backup_keep: Annotated[Int, Field(ge=1, description="backups kept")] = 7
    models_root: Annotated[Str, Field(description=(
        "signed packs installed side by side; empty: <data>/packs"))] = ""
    publisher_keys_dir: Annotated[Str, Field(description="public keys of trusted pack/update publishers")] \
        = "/etc/appliance/publishers"
    selftest_images: Annotated[Str, Field(description=(
        "face images of the self-test; empty: <shared>/data/faces/celeba-dev"))] = ""


MATCHING_MODES = ("central", "local", "local-first")
RELAY_PINS = (0, 40)  # BCM numbering (a Raspberry Pi header has GPIO 0-27; compute modules more)


@dataclass(frozen=True)
class DeviceConfig(_Table):
    """This door device: what ``appliance edge`` (and its systemd unit) runs with."""

    name: Annotated[Identity, Field(description=(
        "this door's identity, provisioned with 'appliance provision device NAME' (its certificate's CN); "
        "empty on a matcher-only host"))] = ""
    source: Annotated[Str, AfterValidator(_not_blank), Field(description=(
        "'picamera2', a camera index ('0'), an rtsp/http URL, a video file or an image folder"))] = "0"
    fps: Annotated[Float, Field(ge=0, description=(
        "replay rate for files and folders, frames per second (0: as fast as they decode)"))] = 0.0
    cool_down_s: Annotated[Float, Field(ge=0, description="frames are ignored for this long after a pass, seconds")] \
        = 2.0
    loop: Annotated[Bool, Field(description=(
        "files and folders replay from the start when they end (kiosk demos, tests)"))] = False
    relay_pin: Annotated[Int | None, Field(ge=RELAY_PINS[0], le=RELAY_PINS[1], description=(
        "BCM pin of the door relay; unset: no relay (the actuator logs)"))] = None
    relay_active_high: Annotated[Bool, Field(description=(
        "the relay is energised by a high level; false for active-low relay boards"))] = True
    # off by default (privacy by default): capturing people for enrollment is another purpose
    # than opening a door, so each door that serves as an enrollment kiosk is switched on for it
    enroll_capture: Annotated[Bool, Field(description=(
        "the console may ask this door's camera for an enrollment capture (the door pauses passes meanwhile); "
        "false: such a request is answered 'refused'"))] = False


@dataclass(frozen=True)
class MatcherConfig(_Table):
    """This matcher replica: what ``appliance matcher`` (and its systemd unit) runs with."""

    name: Annotated[Str, AfterValidator(_identity_required), Field(description=(
        "this replica's MQTT identity ('appliance provision matcher NAME')"))] = "matcher-1"
    device_requests_per_s: Annotated[Float, Field(gt=0, le=10_000, description=(
        "match requests one device may send per second, sustained; the excess is dropped unopened (a door asks "
        "about once per pass)"))] = 10.0
    device_request_burst: Annotated[Int, Field(ge=1, le=100_000, description=(
        "match requests one device may send at once before device_requests_per_s applies"))] = 30
    device_rejects_per_window: Annotated[Int, Field(ge=1, le=1_000_000, description=(
        "refused messages (bad envelope, replay, over budget, not provisioned) from one device within "
        "reject_window_s that raise a flood alarm and mute the device for the rest of the window"))] = 100
    reject_window_s: Annotated[Float, Field(ge=1, le=3600, description=(
        "one audit record per device sums up its refused messages of this long; also how long a flooding device "
        "stays muted, seconds"))] = 10.0


@dataclass(frozen=True)
class OfflineConfig(_Table):
    """Offline operation and enrollment sync; see ``docs/offline.md``."""

    mode: Annotated[Literal[MATCHING_MODES], Field(description=(
        "central (the matcher decides; the cache stands in when it does not answer) | local (the device cache "
        "decides) | local-first"))] = "central"
    answer_timeout_ms: Annotated[Int, Field(ge=1, description=(
        "central mode: decide from the cache after this long without an answer, ms"))] = 300
    sync_wait_ms: Annotated[Int, Field(ge=0, description=(
        "after a (re)connection, local decisions wait this long for catch-up, ms"))] = 1000
    max_cache_age_s: Annotated[Float, Field(ge=0, description=(
        "local decisions are refused when the cache was not confirmed current for longer, seconds (0: no limit)"))] \
        = 86400.0
    snapshot_after: Annotated[Int, Field(ge=1, description=(
        "a device this many revisions behind gets a full snapshot"))] = 5000
    outbox_max_events: Annotated[Int, Field(ge=1, description=(
        "outbox bound; the oldest pending events are spilled beyond it"))] = 100_000
    outbox_window: Annotated[Int, Field(ge=1, description=(
        "events in flight (sent, not yet acknowledged by the matcher)"))] = 200
    outbox_resend_s: Annotated[Float, Field(gt=0, description=(
        "unacknowledged events are sent again after this long, seconds"))] = 5.0
    digest_every_s: Annotated[Float, Field(gt=0, description="devices report a cache digest this often, seconds")] \
        = 300.0


HTTPS_PORT = 8443  # the console's default: above 1024, so no privilege is needed to bind it
MAX_CAPTURE_WAIT_S = 300.0  # protocol.capture_messages.MAX_CAPTURE_TIMEOUT_S: a person waits at the door


@dataclass(frozen=True)
class ConsoleConfig(_Table):
    """The web console and REST API (``appliance console``); see ``docs/api.md``."""

    bind: Annotated[Str, Field(description=(
        "address to listen on: 127.0.0.1 (this host only; put a reverse proxy in front) or 0.0.0.0 (every "
        "interface, TLS required)"))] = "127.0.0.1"
    port: Annotated[Int, Field(ge=1, le=65535, description="TCP port of the console and the API")] = HTTPS_PORT
    tls_cert: Annotated[Str, Field(description=(
        "server certificate (PEM); empty: <data>/pki/console.crt ('appliance console certificate')"))] = ""
    tls_key: Annotated[Str, Field(description=(
        "its private key (PEM); empty: <data>/pki/console.key"))] = ""
    max_upload_mb: Annotated[Float, Field(gt=0, le=1024, description=(
        "largest request body, MB; a bigger one is refused (413) before it is read"))] = 32.0
    max_image_mb: Annotated[Float, Field(gt=0, le=256, description="largest single uploaded image, MB")] = 8.0
    max_images: Annotated[Int, Field(ge=1, le=100, description="most images in one enrollment")] = 10
    requests_per_s: Annotated[Float, Field(gt=0, le=10_000, description=(
        "API requests one client address, and one account, may make per second, sustained (429 beyond)"))] = 10.0
    request_burst: Annotated[Int, Field(ge=1, le=100_000, description=(
        "requests one client or account may make at once before requests_per_s applies"))] = 40
    api_docs: Annotated[Bool, Field(description=(
        "serve the interactive API documentation at /api/docs (the OpenAPI document at /api/openapi.json is "
        "always served)"))] = False
    metrics_loopback: Annotated[Bool, Field(description=(
        "/metrics answers this host's loopback address without a token (a local Prometheus); other clients "
        "need a token with the events:read scope"))] = True
    capture_identity: Annotated[Str, AfterValidator(_identity_required), Field(description=(
        "the console's MQTT identity for enrollment captures at a door ('appliance provision console NAME')"))] \
        = "console"
    capture_timeout_s: Annotated[Float, Field(gt=0, le=MAX_CAPTURE_WAIT_S, description=(
        "longest a door may take for one enrollment capture burst, seconds (a request may ask for less)"))] = 60.0


def _verification_profile() -> QualityProfile:
    return QualityProfile(
        min_inter_eye_px=20.0, max_yaw_deg=40.0, max_pitch_deg=35.0, max_roll_deg=35.0,
        min_sharpness=8.0, min_brightness=30.0, max_brightness=230.0, min_contrast=12.0,
        max_clipped_fraction=0.35, max_eye_closure=0.75, min_landmarks_in_frame=0.9,
        max_other_faces=3, min_utility=0.70,
    )


@dataclass(frozen=True)
class Config(_Table):
    device: Annotated[DeviceConfig, Field(description="This door: what 'appliance edge' runs with.")] \
        = field(default_factory=DeviceConfig)
    matcher: Annotated[MatcherConfig, Field(description="This matcher replica: what 'appliance matcher' runs with.")] \
        = field(default_factory=MatcherConfig)
    models: Annotated[ModelsConfig, Field(description="Model packs: landmarker, detector, embedder.")] \
        = field(default_factory=ModelsConfig)
    matching: Annotated[MatchingConfig, Field(description="Decision thresholds and template options.")] \
        = field(default_factory=MatchingConfig)
    runtime: Annotated[RuntimeConfig, Field(description="Inference resources.")] = field(default_factory=RuntimeConfig)
    security: Annotated[SecurityConfig, Field(description="Keys, retention, anti-replay, roles (docs/security.md).")] \
        = field(default_factory=SecurityConfig)
    ops: Annotated[OpsConfig, Field(description="Operations: broker, health limits, logs, backups, updates.")] \
        = field(default_factory=OpsConfig)
    liveness: Annotated[LivenessConfig, Field(description="Presentation-attack detection (docs/liveness.md).")] \
        = field(default_factory=LivenessConfig)
    offline: Annotated[OfflineConfig, Field(description="Offline operation and enrollment sync (docs/offline.md).")] \
        = field(default_factory=OfflineConfig)
    console: Annotated[ConsoleConfig, Field(description="The web console and REST API (docs/api.md).")] \
        = field(default_factory=ConsoleConfig)
    quality_enrollment: Annotated[QualityProfile, Field(description="Quality limits for an enrollment capture.")] \
        = field(default_factory=QualityProfile)
    quality_verification: Annotated[QualityProfile, Field(description=(
        "Quality limits for a capture at the door (looser than enrollment)."))] \
        = field(default_factory=_verification_profile)
    # where the file was read from: set by load_config, never a key of the file
    source: SkipJsonSchema[Path | None] = None
