"""What a frame source can tell about its camera, and the camera's sensor noise fingerprint.

Injection defence (docs/camera-binding.md): a door is bound at provisioning to the camera it
has - the driver's identity (card name, bus, serial; picamera2's sensor model and location)
and a PRNU-style noise fingerprint (the mean high-pass residual of flat-ish frames, the
per-pixel pattern a real sensor leaves in every frame). At run time a frame's residual is
correlated with the fingerprint: frames from a virtual camera, a replayed file or another
sensor do not carry the pattern. A folder or file source has no identity: it is a replay.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from appliance.durable_file import SHARED, write_durably
from appliance.errors import ApplianceError, ErrorCode

SYSFS_VIDEO = Path("/sys/class/video4linux")
# driver or card names of software cameras: v4l2loopback (OBS, ffmpeg, akvcam feed it), vivid
VIRTUAL_CAMERA_MARKERS = ("v4l2loopback", "dummy video device", "obs virtual camera", "obs-camera",
                          "virtual camera", "akvcam", "vivid", "unitycapture", "manycam", "droidcam")
FINGERPRINT_SIDE = 256  # px: the centre square the fingerprint covers (survives any camera mode >= it)
DENOISE_KERNEL = 3  # px: the median filter whose difference is the high-pass residual
MIN_FINGERPRINT_FRAMES = 8  # fewer frames leave too much scene content in the mean residual
BIND_FRAMES = 40  # frames measured at provisioning (a couple of seconds of a camera)
HELD_OUT_FRAMES = 4  # provisioning frames kept out of the fingerprint to set the threshold on
THRESHOLD_MARGIN = 0.5  # the threshold: this share of the weakest held-out frame's correlation...
NULL_SIGMAS = 8.0  # ...but never below this many standard deviations of an unrelated frame's (1 / side)
BINDING_FILE = "camera-binding.json"
FINGERPRINT_FILE = "camera-fingerprint.npy"


@dataclass(frozen=True)
class CameraIdentity:
    """The camera as its driver names it; ``kind`` is "v4l2", "picamera2", "stream" or "replay"."""

    kind: str
    card: str = ""
    driver: str = ""
    bus: str = ""
    serial: str = ""

    @property
    def virtual(self) -> bool:
        """A software camera (a loopback device fed by any program), by its driver or card name."""
        text = f"{self.card} {self.driver}".lower()
        return any(marker in text for marker in VIRTUAL_CAMERA_MARKERS)

    @property
    def replay(self) -> bool:
        return self.kind == "replay"

    def differs_from(self, bound: CameraIdentity) -> str:
        """Why this camera is not the bound one ("" when it is): kind, card and every identifier
        the bound camera had (a serial the driver gave then must be given now)."""
        for name in ("kind", "card", "driver", "bus", "serial"):
            want, got = getattr(bound, name), getattr(self, name)
            if want and want != got:
                return f"{name} {got!r}, bound to {want!r}"
        return ""


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def v4l2_identity(index: int, sysfs: Path = SYSFS_VIDEO) -> CameraIdentity:
    """Card name, driver, bus and serial of /dev/video<index> from sysfs (USB devices expose
    ``serial`` and ``busnum``/``devpath`` on the USB device the interface hangs off)."""
    node = sysfs / f"video{index}"
    card = _read(node / "name")
    device = node / "device"
    driver = (device / "driver").resolve().name if (device / "driver").exists() else ""
    serial = _read(device / "serial") or _read(device / ".." / "serial")
    bus = device.resolve().name if device.exists() else ""
    return CameraIdentity("v4l2", card=card, driver=driver, bus=bus, serial=serial)


def picamera2_identity(properties: dict) -> CameraIdentity:
    """libcamera's camera properties (``Picamera2().camera_properties``): sensor model,
    location and, where the platform exposes it, a serial number."""
    return CameraIdentity("picamera2", card=str(properties.get("Model", "")),
                          bus=str(properties.get("Location", "")),
                          serial=str(properties.get("SerialNumber", properties.get("Serial", ""))))


def identify(source: object, sysfs: Path = SYSFS_VIDEO) -> CameraIdentity:
    """What ``source`` (``capture.sources``) can tell about its camera; folders and files are replays."""
    kind = type(source).__name__
    if kind == "FolderReplaySource" or getattr(source, "is_file", False):
        return CameraIdentity("replay")
    if kind == "Picamera2Source":
        return picamera2_identity(dict(getattr(source._camera, "camera_properties", {}) or {}))
    target = getattr(source, "target", None)
    if isinstance(target, int):
        return v4l2_identity(target, sysfs)
    return CameraIdentity("stream", card=str(target or ""))


# -- the sensor noise fingerprint ---------------------------------------------------------
def residual(image: np.ndarray) -> np.ndarray:
    """The zero-mean, unit-norm high-pass residual of the frame's centre square (grey, float32):
    what a median filter takes away is mostly sensor noise plus fine edges."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    height, width = grey.shape
    if min(height, width) < FINGERPRINT_SIDE:
        raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE,
                             f"frame {width}x{height} smaller than the fingerprint's {FINGERPRINT_SIDE} px square")
    top, left = (height - FINGERPRINT_SIDE) // 2, (width - FINGERPRINT_SIDE) // 2
    square = grey[top:top + FINGERPRINT_SIDE, left:left + FINGERPRINT_SIDE]
    noise = square.astype(np.float32) - cv2.medianBlur(square, DENOISE_KERNEL).astype(np.float32)
    return _normalised(noise)


def _normalised(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean()
    norm = float(np.linalg.norm(centred))
    return centred / norm if norm > 0 else centred


def fingerprint(images: Iterable[np.ndarray]) -> np.ndarray:
    """The mean residual of at least MIN_FINGERPRINT_FRAMES frames, normalised: scene content
    averages out, the sensor's fixed pattern stays."""
    residuals = [residual(image) for image in images]
    if len(residuals) < MIN_FINGERPRINT_FRAMES:
        raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE,
                             f"{len(residuals)} frames; a fingerprint needs at least {MIN_FINGERPRINT_FRAMES}")
    return _normalised(np.mean(residuals, axis=0)).astype(np.float32)


def correlation(image: np.ndarray, print_: np.ndarray) -> float:
    """Normalised correlation of the frame's residual with the fingerprint: the test statistic."""
    return float(np.sum(residual(image) * print_))


def bind(identity: CameraIdentity, images: list[np.ndarray]) -> CameraBinding:
    """The binding of the camera that took ``images`` (provisioning): the fingerprint from all
    but HELD_OUT_FRAMES, the threshold from those held out, above the unrelated-frame floor."""
    if identity.virtual or identity.replay:
        what = "virtual" if identity.virtual else "replay"
        raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE,
                             f"cannot bind a {what} source ({identity.card or identity.kind}) as a door camera")
    print_ = fingerprint(images[:-HELD_OUT_FRAMES])
    weakest = min(correlation(image, print_) for image in images[-HELD_OUT_FRAMES:])
    floor = NULL_SIGMAS / FINGERPRINT_SIDE
    if weakest <= floor:
        raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE, (
            f"the held-out frames correlate {weakest:.4f} with the fingerprint (floor {floor:.4f}): the scene moved "
            "too much or is too dark; bind again with more frames of a still, evenly lit scene"))
    return CameraBinding(identity, print_, max(floor, THRESHOLD_MARGIN * weakest))


# -- the binding, stored with the device's node files -------------------------------------
@dataclass(frozen=True)
class CameraBinding:
    identity: CameraIdentity
    fingerprint: np.ndarray
    threshold: float  # correlation at or above which a frame carries the bound sensor's pattern

    def save(self, folder: Path) -> Path:
        """``camera-binding.json`` (identity, threshold, the fingerprint's sha256) beside the
        fingerprint array (``.npy``, no pickle) in ``nodes/<device>/``."""
        folder.mkdir(parents=True, exist_ok=True)
        array = io.BytesIO()
        np.save(array, self.fingerprint, allow_pickle=False)
        write_durably(folder / FINGERPRINT_FILE, array.getvalue(), SHARED)  # first: the record names it
        record = {"identity": asdict(self.identity), "threshold": self.threshold,
                  "fingerprint_sha256": hashlib.sha256(self.fingerprint.tobytes()).hexdigest()}
        path = folder / BINDING_FILE
        write_durably(path, json.dumps(record, indent=2).encode("utf-8"), SHARED)
        return path

    @classmethod
    def load(cls, folder: Path) -> CameraBinding:
        """The binding saved in ``folder``; a missing or altered one is CAMERA_UNAVAILABLE."""
        try:
            record = json.loads((folder / BINDING_FILE).read_text())
            print_ = np.load(folder / FINGERPRINT_FILE, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE, (
                f"no camera binding in {folder} ({exc}): run 'appliance provision camera-bind'")) from None
        if hashlib.sha256(print_.tobytes()).hexdigest() != record.get("fingerprint_sha256"):
            raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE,
                                 f"{folder / FINGERPRINT_FILE} does not match its binding")
        return cls(CameraIdentity(**record["identity"]), print_, float(record["threshold"]))


def bind_source(source: object, frames: int = BIND_FRAMES) -> CameraBinding:
    """Provisioning (``appliance provision camera-bind``): the binding of an opened source from
    ``frames`` of its frames (a still, evenly lit scene: a wall or the empty door)."""
    identity = identify(source)
    images = []
    for frame in source.frames():  # type: ignore[attr-defined]
        images.append(frame.image)
        if len(images) >= frames:
            break
    return bind(identity, images)
