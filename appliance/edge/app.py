"""``appliance edge`` as a service: one door built from the typed configuration.

``EdgeApp.build`` puts the pieces together from ``Config`` (``[device]``, ``[liveness]``,
``[offline]``, ``[security]``): the face pipeline (models loaded before "ready"), the
liveness checker and, at level ``active``, the challenge runner with the operating system's
random source; the door's offline parts on one MQTT connection (``edge.offline.open_door``:
cache, outbox, sync client, decider); the display; the door controller of ``[door_io]``
(``edge.door_io``: relay, door sensor, exit button, tamper, Wiegand and OSDP links), whose events
go to the outbox; the device key that signs liveness evidence; the frame source and the
watchdog, whose heartbeat reports the decider's state; the enrollment capture handler on the
same connection (``edge.enroll_capture``: ``[device] enroll_capture`` says whether it captures
or refuses); with ``[kiosk] enabled`` the kiosk page on 127.0.0.1 (``edge.kiosk.server``), fed
the same screens as the log display. Cards and PINs (``edge.door_modes``) are decided under the
same access rules as faces (``admit``).
``EdgeApp.serve`` runs the daemon until the frames end, ``stop`` is set or enough passes are
done, and tells systemd when it is ready and stopping.

``site`` is the host's data folder as provisioning left it (``pki/``, ``nodes/<device>/``,
``directory.json``): anything with ``folder``, ``mqtt()``, ``device_keys()`` and ``directory``.
"""
from __future__ import annotations

import random
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from appliance.capture.sources import FrameSource, open_source
from appliance.config import Config
from appliance.edge.camera_gate import CameraGate, gate_from
from appliance.edge.challenge_runner import ChallengeRunner, ChallengeSettings
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.door_pass import PassRecord
from appliance.edge.enroll_capture import CaptureLiveness, EnrollCapture
from appliance.edge.door_io.controller import DoorController
from appliance.edge.door_io.events import DoorEvent, EventSink
from appliance.edge.door_io.factory import controller_from
from appliance.edge.door_modes import CredentialDecider
from appliance.edge.hardware import ConsoleDisplay, CredentialReader, Display, Displays, DoorActuator
from appliance.edge.kiosk.server import KioskServer, kiosk_display
from appliance.edge.offline import OfflineDoor, open_door
from appliance.liveness.checker import LivenessChecker
from appliance.liveness.evidence import Ed25519Signer
from appliance.liveness.step_up import LEVEL as STEP_UP
from appliance.ops import notify
from appliance.packs.defaults import check_site_use
from appliance.pipeline import FacePipeline
from appliance.protocol import messages

MIN_BURST_FRAMES = 3  # the motion cue needs a few frames whatever liveness.burst_frames says


def challenge_random() -> random.Random:
    """The challenge's random source: the operating system's, so that no recording can
    predict the actions, their order or the pauses. Tests replace it with a seeded one."""
    return random.SystemRandom()


@dataclass
class EdgeApp:
    config: Config
    pipeline: FacePipeline
    door: OfflineDoor
    daemon: EdgeDaemon
    source: FrameSource
    watchdog: notify.Watchdog
    actuator: DoorActuator
    capture: EnrollCapture
    kiosk: KioskServer | None = None  # the screen's page on 127.0.0.1 ([kiosk] enabled)

    @classmethod
    def build(cls, config: Config, site, *, status_file: Path | None = None, display: Display | None = None,
              actuator: DoorActuator | None = None, rng: random.Random | None = None) -> EdgeApp:
        device, level = config.device, config.liveness.level
        with ExitStack() as undo:  # whatever was opened is closed again if a later step fails
            pipeline = FacePipeline(config)
            check_site_use(config.site.use, pipeline.embedder_pack, pipeline.registry, "edge")  # licence first
            undo.callback(pipeline.close)
            pipeline.load()
            liveness = challenge = None
            if level != "off":
                liveness = LivenessChecker(config.liveness, pipeline.registry)
                _ = liveness.model, liveness.calibration  # a missing model or calibration fails here
            if level in ("active", STEP_UP):  # step-up: engaged by the door pass when the passive check is unclear
                challenge = ChallengeRunner(ChallengeSettings.from_config(config.liveness), rng or challenge_random(),
                                            step_up=level == STEP_UP)
            # the door's cache, outbox, sync client and decider share one MQTT connection
            door = open_door(site, device.name, config.offline, pipeline.threshold, config.security.replay_window_s)
            undo.callback(door.close)
            reader = CredentialReader()  # cards and PINs: an OSDP reader of [door_io], or the door's own input
            emit = door.wipe.guard_emit(door.emit)
            if actuator is None:  # relay, contacts, panel and reader links of [door_io]; events to the outbox
                controller = controller_from(config, door_events(device.name, emit), credentials=reader)
                undo.callback(controller.stop)
                actuator = controller
            undo.callback(actuator.lock)
            watchdog = notify.Watchdog(status_file=status_file)
            keys = site.device_keys(device.name)
            signer = Ed25519Signer(keys.signing.private_bytes_raw(), key_id=device.name)
            kiosk = None
            if config.kiosk.enabled:
                kiosk = KioskServer(kiosk_display(config.kiosk), config.kiosk.port).start()
                undo.callback(kiosk.stop)
            display = display or ConsoleDisplay()
            if kiosk is not None:
                display = Displays(display, kiosk.display)
            burst_frames = max(MIN_BURST_FRAMES, config.liveness.burst_frames)
            capture_challenge = None if challenge is None else ChallengeRunner(  # a capture always asks one
                ChallengeSettings.from_config(config.liveness), rng or challenge_random())
            capture_liveness = None if liveness is None else CaptureLiveness(  # the passes' check and level
                liveness, signer, liveness.calibration_id, burst_frames, capture_challenge)
            capture = EnrollCapture(device.name, pipeline, display, device.enroll_capture, keys, site.directory,
                                    door.link.endpoint.publish, door.link.sealer, config.security.replay_window_s,
                                    liveness=capture_liveness, emit=emit)
            capture.start()
            undo.callback(capture.stop)
            door.link.on_capture = capture.on_message
            settings = EdgeSettings(device.name, burst_frames=burst_frames, cool_down_s=device.cool_down_s)
            # cards and PINs in the door's mode ([door_mode]): the matcher, else the device cache
            # (the site's access rules apply to a card pass decided offline as to a face: ``admit``)
            credentials = CredentialDecider.from_config(door.link, door.cache, config, pump=door.pump,
                                                        admit=door.decider.admit)
            source = open_source(device.source, fps=device.fps, loop=device.loop)
            undo.callback(source.close)
            gate = gate_from(device.name, device.camera_binding, Path(site.folder) / "nodes" / device.name,
                             source, emit, display)  # the camera binding (edge.camera_gate)
            daemon = EdgeDaemon(
                settings, pipeline, door.decider, liveness=liveness, actuator=actuator,
                display=display, emit=emit, heartbeat=_heartbeat(watchdog, pipeline, door, gate),
                signer=signer, calibration_id=liveness.calibration_id if liveness else "", challenge=challenge,
                capture=capture, reader=reader, credentials=credentials, gate=gate)
            undo.pop_all()
        return cls(config, pipeline, door, daemon, source, watchdog, actuator, capture, kiosk)

    def serve(self, stop: threading.Event, max_passes: int | None = None,
              say: Callable[[str], None] | None = None) -> int:
        """Run until the frames end, ``stop`` is set or ``max_passes`` passes are done; one
        line per pass on ``say`` (stdout by default); closes everything at the end."""
        say = say or (lambda line: print(line, flush=True))
        name = self.config.device.name
        notify.ready("camera open")
        status = self.door.decider.status
        say(f"{name}: ready (liveness {self.config.liveness.level}, mode {self.config.offline.mode}, "
            f"matcher {'reachable' if status.matcher_reachable else 'unreachable'}, cache {status.cache})")
        self.door.wipe.on_wiped.append(stop.set)  # a remote wipe ends the pass loop (edge.wipe)
        try:
            for record in self.daemon.run_iter(self.source.frames(), stop, max_passes):
                say(pass_line(name, record))
        finally:
            notify.stopping()
            self.close()
            self.watchdog.stopped()
        if self.door.wipe.done.is_set():
            say(f"{name}: wiped by a remote order: cache and keys destroyed; re-provision this door to use it")
        say(f"{name}: stopped after {len(self.daemon.passes)} passes")
        return 0

    def close(self) -> None:
        if self.kiosk is not None:
            self.kiosk.stop()
        self.door.link.on_capture = None
        self.capture.stop()
        self.source.close()
        self.actuator.lock()
        if isinstance(self.actuator, DoorController):
            self.actuator.stop()  # releases the pins and the panel/reader links
        self.door.close()
        self.pipeline.close()


def _heartbeat(watchdog: notify.Watchdog, pipeline: FacePipeline, door: OfflineDoor,
               gate: CameraGate | None = None) -> Callable[[], None]:
    """Called by the daemon once per frame: pings the watchdog and writes the status record."""

    def beat() -> None:
        if door.wipe.done.is_set():  # the stores are being destroyed: report what the door is
            watchdog.heartbeat(model_loaded=True, model=pipeline.embedder_pack.label, broker=door.link.online,
                               **door.decider.status.as_dict())
            return
        watchdog.heartbeat(model_loaded=True, model=pipeline.embedder_pack.label, broker=door.link.online,
                           cache_revision=door.cache.revision, cache_synced_at=door.cache.confirmed_at,
                           outbox=door.outbox.depth(), **door.decider.status.as_dict(),
                           **(gate.status() if gate is not None else {}))

    return beat


def door_events(device: str, emit: Callable[[str, messages.Message], None]) -> EventSink:
    """The door controller's events into the outbox: alarms (forced or held open, tamper) as
    ``Alarm``, the rest (released, request to exit, door opened/closed) as ``Event``."""

    def sink(event: DoorEvent) -> None:
        details = {"detail": event.detail} if event.detail else {}
        if event.is_alarm:
            emit("alarm", messages.Alarm(alarm_id=messages.new_id(), device_id=device, kind=event.kind,
                                         at=event.at, details=details))
            return
        # in the door log beside the passes: "door_released", "door_request_to_exit", "door_opened"
        kind = event.kind if event.kind.startswith("door_") else f"door_{event.kind}"
        emit("event", messages.Event(event_id=messages.new_id(), device_id=device, kind=kind, at=event.at,
                                     details=details))

    return sink


def pass_line(device: str, record: PassRecord) -> str:
    """How ``appliance edge`` prints a pass: outcome, masked name, reason, latency; never a score."""
    name = record.display_name or "-"
    return f"{device}: {record.outcome.upper():11s} {name:12s} {record.reason:16s} {record.latency_ms:6.0f} ms"
