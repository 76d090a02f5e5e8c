"""The tables of the configuration file: one frozen dataclass each, one field a key.

Each field's ``Annotated[..., Field(...)]`` carries its type, bounds or allowed values and
description; a rule joining two keys is a validator on its table. Nothing here runs when code
builds a table (or ``dataclasses.replace``s one): ``appliance.config.loading`` checks a file, a
flag or an environment override against these declarations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic.json_schema import SkipJsonSchema

from appliance.config.admin_tables import (  # noqa: F401  (re-exported: the tables' one import path)
    HTTPS_PORT, LOG_FORMATS, LOG_LEVELS, MAX_CAPTURE_WAIT_S, MIN_AUDIT_RETENTION_DAYS, ROLES_REMOVED,
    ConsoleConfig, OpsConfig, SecurityConfig,
)
from appliance.config.fields import (  # noqa: F401
    IDENTITY_PATTERN, IDENTITY_RULE, SERVICES, Bool, Degrees, Float, Fraction, Grey, Identity, Int, Refused, Str,
    Table, identity_or_empty, identity_required, is_identity, lowercase, not_blank, ordered,
)
from appliance.config.mode_tables import DoorModeConfig
from appliance.config.door_io_tables import DoorIOConfig
from appliance.config.quality_presets import PRESET_NAMES, PRESETS
from appliance.config.site_tables import SiteConfig
from appliance.config.access_tables import AccessConfig
from appliance.config.bridge_tables import BridgeConfig
from appliance.config.door_tables import KioskConfig

@dataclass(frozen=True)
class QualityProfile(Table):
    """Limits for the ISO/IEC 29794-5 style measures; see ``vision.quality``."""

    preset: Annotated[Literal[("",) + PRESET_NAMES], Field(description=(
        "named limits (appliance.config.quality_presets) filling the keys this table leaves out; "
        "'iso19794-5-enrollment': ISO/IEC 19794-5 eye distance and pose"))] = ""
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
    max_eyes_occlusion: Annotated[Fraction, Field(description=(
        "largest eye-patch cover (sunglasses, a bar; 0 clear .. 1 covered), see docs/quality.md"))] = 0.30
    max_mouth_occlusion: Annotated[Fraction, Field(description=(
        "largest share of nose, mouth and chin covered by a non-skin colour (a mask)"))] = 0.40
    max_face_occlusion: Annotated[Fraction, Field(description=(
        "largest skin-coloured cover of the mouth (a hand; 0 lips visible .. 1 covered)"))] = 0.05

    _brightness_range = ordered("min_brightness", "max_brightness", "need min_brightness <= max_brightness")


ALLOWED_DETECTORS = ("mediapipe", "yunet")


@dataclass(frozen=True)
class ModelsConfig(Table):
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
class MatchingConfig(Table):
    thresholds: Annotated[dict[str, Annotated[Float, Field(ge=-1.0, le=1.0)]], Field(description=(
        "cosine-similarity threshold (-1..1) by embedding pack id; a pack missing here uses the threshold "
        "recommended in its manifest ('appliance calibrate' writes this table)"))] = field(default_factory=dict)
    flip_fusion: Annotated[Bool, Field(description=(
        "average the templates of the aligned crop and of its mirror image (robust to pose)"))] = True


@dataclass(frozen=True)
class RuntimeConfig(Table):
    threads: Annotated[Int, Field(ge=1, le=64, description="inference threads")] = 2
    max_faces: Annotated[Int, Field(ge=1, description="faces looked at in one frame")] = 4


# weakest first (the server's "at least this level" compares positions): step-up is above
# passive+motion (it adds a challenge when the passive evidence is not clear), below active
# (which always asks one)
LIVENESS_LEVELS = ("off", "passive", "passive+motion", "passive+stepup", "active")
STEP_UP_MARGIN = 2.0  # step-up band, log-odds: ~10 % of held-out bona fide that pass fall inside (docs/liveness.md)


@dataclass(frozen=True)
class LivenessConfig(Table):
    """Presentation-attack detection; see appliance.liveness and docs/liveness.md."""

    level: Annotated[Literal[LIVENESS_LEVELS], Field(description=(
        "off | passive (model + image cues) | passive+motion (+ flat-plane/micro-motion over a burst) | "
        "passive+stepup (passive+motion; a random challenge only when the live score is within step_up_margin "
        "above the threshold) | active (passive+motion + a random blink/turn/smile challenge every pass)"))] \
        = "passive+motion"
    pack: Annotated[Str, Field(description="presentation-attack detection pack id")] = "minifasnet-silentface"
    calibration: Annotated[Str, Field(description=(
        "fusion weights and decision threshold written by 'appliance liveness calibrate' (a relative path is "
        "resolved against the repo root)"))] = "config/liveness-calibration.json"
    burst_frames: Annotated[Int, Field(ge=1, description="frames judged together for motion cues")] = 5
    challenge_min: Annotated[Int, Field(ge=1, le=3, description="least steps of a challenge (active, step-up)")] = 1
    challenge_max: Annotated[Int, Field(ge=1, le=3, description="most steps of a challenge (active, step-up)")] = 3
    challenge_step_timeout_s: Annotated[Float, Field(gt=0, description=(
        "time to perform one challenge step, seconds"))] = 4.0
    challenge_max_delay_s: Annotated[Float, Field(ge=0, description=(
        "longest random pause before each prompt (replay resistance), seconds"))] = 1.2
    step_up_margin: Annotated[Float, Field(ge=0.0, le=10.0, description=(
        "passive+stepup: the band above the threshold, in log-odds of the live score (logit(score) - "
        "logit(threshold)), within which a presentation is not clearly live and gets a challenge; 0 never asks"))] \
        = STEP_UP_MARGIN

    _challenge_range = ordered("challenge_min", "challenge_max", "need 1 <= challenge_min <= challenge_max <= 3")


MATCHING_MODES = ("central", "local", "local-first")
RELAY_PINS = (0, 40)  # BCM numbering (a Raspberry Pi header has GPIO 0-27; compute modules more)


@dataclass(frozen=True)
class DeviceConfig(Table):
    """This door device: what ``appliance edge`` (and its systemd unit) runs with."""

    name: Annotated[Identity, Field(description=(
        "this door's identity, provisioned with 'appliance provision device NAME' (its certificate's CN); "
        "empty on a matcher-only host"))] = ""
    source: Annotated[Str, AfterValidator(not_blank), Field(description=(
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
    # off by default: existing doors have no binding until 'appliance provision camera-bind' measures one
    camera_binding: Annotated[Literal["off", "warn", "enforce"], Field(description=(
        "injection defence (docs/camera-binding.md): 'enforce' refuses frames that do not come from the camera "
        "bound at provisioning (virtual camera, replayed file, other sensor) with a camera_injection alarm; "
        "'warn' raises the alarm but uses the frames; 'off' does not check"))] = "off"


MAX_GATHER_MS = 100.0  # a door decides from its cache after offline.answer_timeout_ms (300 ms)


@dataclass(frozen=True)
class MatcherConfig(Table):
    """This matcher replica: what ``appliance matcher`` (and its systemd unit) runs with."""

    name: Annotated[Str, AfterValidator(identity_required), Field(description=(
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
        "stays muted the first time, seconds"))] = 10.0
    device_mute_max_s: Annotated[Float, Field(ge=1, le=86_400, description=(
        "a device that floods again within reject_window_s of its mute ending is muted twice as long as the last "
        "time, up to this long (never less than reject_window_s): a broken or hostile device stays shed at the "
        "broker instead of raising an alarm every window, seconds"))] = 640.0
    request_gather_ms: Annotated[Float, Field(ge=0.0, le=MAX_GATHER_MS, description=(
        "while requests arrive faster than two per window, the replica waits up to this long after the oldest "
        "waiting one so that more 1:N searches share one pass over the gallery: less CPU per request, at most "
        "this much more latency; a lone request is never held; 0: never wait, ms"))] = 15.0

    @property
    def request_gather_s(self) -> float:
        return self.request_gather_ms / 1000.0


@dataclass(frozen=True)
class OfflineConfig(Table):
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


def _verification_profile() -> QualityProfile:
    return QualityProfile(
        min_inter_eye_px=20.0, max_yaw_deg=40.0, max_pitch_deg=35.0, max_roll_deg=35.0,
        min_sharpness=8.0, min_brightness=30.0, max_brightness=230.0, min_contrast=12.0,
        max_clipped_fraction=0.35, max_eye_closure=0.75, min_landmarks_in_frame=0.9,
        max_other_faces=3, min_utility=0.70,
    )



def quality_preset(name: str) -> QualityProfile:
    """The named profile of ``quality_presets`` (the table's other keys at their defaults)."""
    return QualityProfile(preset=name, **PRESETS[name])


@dataclass(frozen=True)
class Config(Table):
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
    door_mode: Annotated[DoorModeConfig, Field(description=(
        "How a person may pass this door: face, card, PIN, and when (docs/door-modes.md)."))] \
        = field(default_factory=DoorModeConfig)
    door_io: Annotated[DoorIOConfig, Field(description=(
        "The door's wiring: relay, contacts, Wiegand, OSDP (docs/door-io.md)."))] \
        = field(default_factory=DoorIOConfig)
    kiosk: Annotated[KioskConfig, Field(description="The door's screen, served on 127.0.0.1 (docs/kiosk.md).")] \
        = field(default_factory=KioskConfig)
    access: Annotated[AccessConfig, Field(description=(
        "Access rules: the site's time zone for schedules, passback defaults (docs/access.md)."))] \
        = field(default_factory=AccessConfig)
    site: Annotated[SiteConfig, Field(description=(
        "What the site declares: its use (commercial | research) decides the model licences it may run "
        "(docs/models.md)."))] = field(default_factory=SiteConfig)
    site_bridge: Annotated[BridgeConfig, Field(description=(
        "A site broker's bridge to the central broker (docs/deployment.md)."))] = field(default_factory=BridgeConfig)
    # where the file was read from: set by load_config, never a key of the file
    source: SkipJsonSchema[Path | None] = None
