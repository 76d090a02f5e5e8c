"""Camera identity and the sensor noise fingerprint: virtual cameras by their driver's names (a
sysfs tree laid out as the kernel's), a folder is a replay, and the fingerprint of one synthetic
sensor (a fixed per-pixel noise pattern on real shared faces) separates it from another."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.capture.camera_identity import (
    FINGERPRINT_SIDE, CameraBinding, CameraIdentity, bind, correlation, fingerprint, identify, picamera2_identity,
    v4l2_identity,
)
from appliance.capture.sources import FolderReplaySource
from appliance.errors import ApplianceError

FRAME_SIDE = 320  # px: the synthetic camera's frames
SENSOR_NOISE = 3.0  # grey levels: the standard deviation of a sensor's fixed pattern


def sensor(seed: int) -> np.ndarray:
    """A sensor's fixed per-pixel noise pattern (photo-response and dark-signal non-uniformity)."""
    return np.random.default_rng(seed).normal(0.0, SENSOR_NOISE, (FRAME_SIDE, FRAME_SIDE, 1)).astype(np.float32)


def shoot(image: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float32) + pattern, 0, 255).astype(np.uint8)


def scenes(faces, count: int, skip: int = 0) -> list[np.ndarray]:
    files = sorted((faces / "celeba-dev").glob("*/*.jpg"))[skip:skip + count]
    return [cv2.resize(cv2.imread(str(path)), (FRAME_SIDE, FRAME_SIDE)) for path in files]


def fake_sysfs(root, index: int, name: str, driver: str, serial: str = ""):
    """/sys/class/video4linux/video<index> as the kernel lays it out (device -> the bound driver)."""
    device = root / "devices" / f"1-1.{index}:1.0"
    (root / "drivers" / driver).mkdir(parents=True, exist_ok=True)
    device.mkdir(parents=True)
    (device / "driver").symlink_to(root / "drivers" / driver)
    if serial:
        (device / "serial").write_text(serial + "\n")
    node = root / "video4linux" / f"video{index}"
    node.mkdir(parents=True)
    (node / "name").write_text(name + "\n")
    (node / "device").symlink_to(device)
    return root / "video4linux"


@pytest.mark.parametrize("name, driver", [("Dummy video device (0x0000)", "v4l2loopback"),
                                          ("OBS Virtual Camera", "v4l2loopback"),
                                          ("Virtual Camera", "uvcvideo")])
def test_virtual_cameras_are_recognised_by_their_driver_names(tmp_path, name, driver):
    identity = v4l2_identity(0, fake_sysfs(tmp_path, 0, name, driver))
    assert identity.virtual and identity.card == name and identity.driver == driver


def test_a_usb_camera_has_its_card_bus_and_serial(tmp_path):
    identity = v4l2_identity(2, fake_sysfs(tmp_path, 2, "HD Pro Webcam C920", "uvcvideo", serial="A1B2C3"))
    assert not identity.virtual and not identity.replay
    assert (identity.card, identity.driver, identity.serial, identity.bus) == (
        "HD Pro Webcam C920", "uvcvideo", "A1B2C3", "1-1.2:1.0")
    swapped = CameraIdentity("v4l2", "HD Pro Webcam C920", "uvcvideo", "1-1.2:1.0", "ZZZ999")
    assert "serial" in swapped.differs_from(identity) and identity.differs_from(identity) == ""


def test_picamera2_properties_give_the_sensor_model():
    identity = picamera2_identity({"Model": "imx708", "Location": 2, "Rotation": 0})
    assert (identity.kind, identity.card, identity.bus) == ("picamera2", "imx708", "2") and not identity.virtual


def test_a_folder_source_has_no_identity_it_is_a_replay(faces):
    identity = identify(FolderReplaySource(faces / "yale" / "subject01"))
    assert identity.replay and identity.card == "" and identity.serial == ""


def test_the_fingerprint_correlates_with_its_own_sensor_only(faces):
    a, b = sensor(1), sensor(2)
    print_a = fingerprint(shoot(image, a) for image in scenes(faces, 12))
    held_out = scenes(faces, 10, skip=12)
    own = [correlation(shoot(image, a), print_a) for image in held_out]
    other = [correlation(shoot(image, b), print_a) for image in held_out]
    clean = [correlation(image, print_a) for image in held_out]
    null_sigma = 1.0 / FINGERPRINT_SIDE  # an unrelated residual's correlation: about N(0, 1/side)
    assert min(own) > 20 * null_sigma
    assert max(map(abs, other + clean)) < 4 * null_sigma


def test_a_binding_is_saved_with_the_node_files_and_checked(tmp_path, faces):
    camera = CameraIdentity("v4l2", "HD Pro Webcam C920", "uvcvideo", "1-1.2:1.0", "A1B2C3")
    binding = bind(camera, [shoot(image, sensor(1)) for image in scenes(faces, 16)])
    assert binding.threshold > 8 / FINGERPRINT_SIDE
    binding.save(tmp_path / "door-1")
    loaded = CameraBinding.load(tmp_path / "door-1")
    assert loaded.identity == camera and np.array_equal(loaded.fingerprint, binding.fingerprint)
    np.save(tmp_path / "door-1" / "camera-fingerprint.npy", np.zeros_like(binding.fingerprint))  # altered
    with pytest.raises(ApplianceError, match="does not match"):
        CameraBinding.load(tmp_path / "door-1")


def test_a_virtual_camera_or_a_replay_cannot_be_bound(faces):
    images = scenes(faces, 16)
    for identity in (CameraIdentity("v4l2", "Dummy video device (0x0000)", "v4l2loopback"), CameraIdentity("replay")):
        with pytest.raises(ApplianceError, match="cannot bind"):
            bind(identity, images)
