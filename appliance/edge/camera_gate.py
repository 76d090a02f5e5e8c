"""The door's camera binding at run time: frames that do not come from the bound camera do not pass.

``[device] camera_binding`` says what the gate does: "off" (no gate), "warn" (alarm and log,
frames still pass) or "enforce" (frames refused: no pass runs on them, the display says
"unavailable"). The source's identity is judged once (a virtual camera, a replayed file or
folder, another camera than the bound one); the sensor fingerprint on one frame in
CHECK_EVERY_FRAMES (a correlation costs a median filter of the centre square, not worth every
frame). A refusal raises one ``camera_injection`` alarm; another follows only after frames
carried the binding again. docs/camera-binding.md says what this catches and what it cannot.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from appliance.capture.camera_identity import CameraBinding, CameraIdentity, correlation, identify
from appliance.capture.sources import Frame
from appliance.edge.hardware import UNAVAILABLE_TEXT, Display
from appliance.edge.kiosk.screen import ScreenState, State
from appliance.errors import ApplianceError
from appliance.protocol import messages

log = logging.getLogger(__name__)

CHECK_EVERY_FRAMES = 10  # the fingerprint is checked on the first frame and then one in this many
ALARM_KIND = "camera_injection"
MODES = ("off", "warn", "enforce")


class CameraGate:
    """Called by the daemon on every frame: ``admit(frame)`` is False when the frame must not
    be used. ``reason`` is why the camera is refused now ("" while it carries the binding)."""

    def __init__(self, device_id: str, mode: str, binding: CameraBinding | None, identity: CameraIdentity,
                 emit: Callable[[str, messages.Message], None], display: Display,
                 check_every: int = CHECK_EVERY_FRAMES):
        if mode not in MODES:
            raise ValueError(f"camera_binding {mode!r}: one of {', '.join(MODES)}")
        self.device_id, self.mode, self.binding = device_id, mode, binding
        self.emit, self.display, self.check_every = emit, display, check_every
        self.source_reason = self._judge_source(identity)
        self.reason = ""
        self.correlation: float | None = None  # the last sampled frame's
        self._seen = 0

    def _judge_source(self, identity: CameraIdentity) -> str:
        """Why the source itself cannot be the bound camera, "" when it may be."""
        if identity.virtual:
            return f"virtual camera: {identity.card or identity.driver}"
        if identity.replay:
            return "replayed file or folder, not a camera"
        if self.binding is None:
            return "unbound: no camera binding provisioned for this door"
        differs = identity.differs_from(self.binding.identity)
        return f"different camera: {differs}" if differs else ""

    def admit(self, frame: Frame) -> bool:
        """Whether the daemon may use ``frame``: always in "warn" mode (the alarm is raised all the same)."""
        if self.mode == "off":
            return True
        sampled = self._seen % self.check_every == 0
        self._seen += 1
        if sampled:
            self._judge(self.source_reason or self._judge_frame(frame))
        return self.mode == "warn" or not self.reason

    def _judge_frame(self, frame: Frame) -> str:
        assert self.binding is not None  # a source without a binding is refused by its reason
        try:
            self.correlation = correlation(frame.image, self.binding.fingerprint)
        except ApplianceError as exc:
            return f"different sensor: {exc}"
        if self.correlation < self.binding.threshold:
            return (f"different sensor: noise correlation {self.correlation:.4f} "
                    f"below the bound camera's {self.binding.threshold:.4f}")
        return ""

    def _judge(self, reason: str) -> None:
        if reason == self.reason:
            return
        previous, self.reason = self.reason, reason
        if not reason:
            log.info("%s: the camera carries its binding again", self.device_id)
            return
        if previous:  # refused already, for another reason: one alarm per refusal
            return
        log.warning("%s: camera refused (%s): %s", self.device_id, self.mode, reason)
        alarm = messages.Alarm(alarm_id=messages.new_id(), device_id=self.device_id, kind=ALARM_KIND,
                               at=time.time(), details={"reason": reason, "mode": self.mode})
        try:
            self.emit("alarm", alarm)
        except ApplianceError as exc:  # the outbox keeps it for later (offline)
            log.warning("could not send the camera alarm: %s", exc)
        if self.mode == "enforce":
            self.display.show(ScreenState.of(State.UNAVAILABLE, UNAVAILABLE_TEXT))

    def status(self) -> dict[str, object]:
        """For the heartbeat's status record (``appliance health``)."""
        return {"camera_binding": self.mode, "camera_refused": self.reason}


def gate_from(device_id: str, mode: str, node_folder: Path, source: object,
              emit: Callable[[str, messages.Message], None], display: Display) -> CameraGate | None:
    """The gate of ``[device] camera_binding`` over the door's opened ``source``, with the binding
    saved in ``nodes/<device>/``; None when the mode is "off". A missing or altered binding
    leaves the door unbound (refused with that reason under "enforce"), not failing to start."""
    if mode == "off":
        return None
    try:
        binding: CameraBinding | None = CameraBinding.load(node_folder)
    except ApplianceError as exc:
        log.warning("%s: %s", device_id, exc)
        binding = None
    return CameraGate(device_id, mode, binding, identify(source), emit, display)
