"""The kiosk screen in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright):
real faces from the shared data replayed from folders through the real daemon, pipeline, liveness
checker and challenge, decided by the real matching rules over a real SQLCipher device cache
(faces: ``MatchEngine`` on the cache's local view, as the cache decider builds it; cards:
``CredentialDecider``). One daemon display feeds two kiosk pages at once - zh_CN in portrait
(800x1280) and en in landscape (1280x800) - through every state: guidance, idle, challenge,
alarm, accepted, refused, unavailable, alternative. A screenshot of each state and language goes
to ``reports/kiosk/<lang>-<state>.png``.
"""
from __future__ import annotations

import dataclasses
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from appliance import i18n
from appliance.capture.images import read_image
from appliance.capture.sources import FolderReplaySource, Frame
from appliance.edge.challenge_runner import ChallengeRunner, ChallengeSettings
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.door_modes import CredentialDecider, DoorMode, DoorModeSchedule
from appliance.edge.hardware import UNAVAILABLE_TEXT, ConsoleDisplay, Displays, LogActuator
from appliance.edge.kiosk.preview import Preview
from appliance.edge.kiosk.screen import ALTERNATIVE_TEXT, IDLE_TEXT, STEP_UP_TEXT, WELCOME_TEXT, State
from appliance.edge.kiosk.server import KioskDisplay, KioskServer, door_notice
from appliance.enrollment import judge
from appliance.errors import ApplianceError, ErrorCode
from appliance.liveness.challenge import Action, draw_steps
from appliance.liveness.checker import LivenessChecker
from appliance.liveness.step_up import LEVEL as STEP_UP, live_margin
from appliance.matching import Gallery
from appliance.matching.decisions import MatchEngine
from appliance.protocol import messages
from appliance.security.keys import CACHE_DB, FileKeyProvider, ensure_keys
from appliance.security.masking import mask_name
from appliance.stores.device import CacheEntry, DeviceCache

CHROMIUM = Path("/usr/bin/chromium")
REPORTS = Path(__file__).resolve().parents[2] / "reports" / "kiosk"
VIEWPORTS = {"zh_CN": {"width": 800, "height": 1280}, "en": {"width": 1280, "height": 800}}
PERSON, STRANGER = "id07201", "id07211"  # celeba-dev faces that pass the door's quality profile
NAME, CARD = "张伟", "C-1001"
DARK = 0.15  # a face this much darker is still found but fails the door's exposure limits: guidance
FPS = 5.0  # the replayed camera's frame rate (frames stamped 1/FPS apart)
SETTINGS = ChallengeSettings(minimum=1, maximum=1, step_timeout_s=2.0, max_delay_s=0.6)
YALE_SUBJECT = "subject02"
WAIT_MS = 10_000


# -- the camera: folders of real images, replayed ----------------------------------------------
def folder_of(root: Path, name: str, images: list[np.ndarray | Path]) -> Path:
    import cv2

    out = root / name
    out.mkdir()
    for index, image in enumerate(images):
        if isinstance(image, Path):
            shutil.copy(image, out / f"{index:03d}{image.suffix}")
        else:
            cv2.imwrite(str(out / f"{index:03d}.png"), image)
    return out


class Camera:
    """A folder replayed as a camera at exactly FPS (stamps continue across folders, as a real
    clock does), stopped as soon as ``until`` holds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def replay(self, folder: Path, until: Callable[[], bool], loop: bool = True, limit: int = 200) -> Iterator[Frame]:
        for count, frame in enumerate(FolderReplaySource(str(folder), loop=loop).frames()):
            if until() or count >= limit:
                return
            self.now += 1 / FPS
            yield Frame(frame.image, frame.index, frame.timestamp, self.now, frame.origin)


def no_face_pictures(count: int) -> list[np.ndarray]:
    """What the camera sees when nobody is there: gradients and noise, no face."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 320, dtype=np.float32)
    return [np.clip(np.add.outer(ramp[:240] * (i % 3) / 3, ramp)[..., None] / 2 + rng.normal(0, 20, (240, 320, 3)),
                    0, 255).astype(np.uint8) for i in range(count)]


def person_images(faces: Path, person: str, start: int, count: int) -> list[Path]:
    return sorted((faces / "celeba-dev" / person).glob("*.jpg"))[start:start + count]


# -- the deciders: the real rules over a real device cache --------------------------------------
class CacheFaceDecider:
    """The face decision the cache decider makes locally: ``MatchEngine`` over the cache's view;
    ``offline`` makes it answer as a matcher link that got no answer (REQUEST_TIMEOUT)."""

    def __init__(self, cache: DeviceCache, pack: tuple[str, str], threshold: float):
        ids, vectors, claims, self.names = cache.local_view(*pack)
        gallery = Gallery(*pack, vectors.shape[1])
        gallery.load(ids, vectors)
        self.engine = MatchEngine(gallery, threshold, lambda claim: claims.get(cache.claim_of(claim)))
        self.offline = False

    def request(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision:
        if self.offline:
            raise ApplianceError(ErrorCode.REQUEST_TIMEOUT, "no answer from the matcher")
        from appliance.vision.templates import Template

        verdict = self.engine.decide(request.device_id, Template(request.vector(), *pack), request.claim, 0.0)
        return messages.Decision(request.request_id, verdict.accepted, verdict.reason,
                                 self.names.get(verdict.subject_id, "") if verdict.accepted else "",
                                 subject=verdict.subject_id if verdict.accepted else "")


@pytest.fixture(scope="module")
def cache(tmp_path_factory, pipeline, faces):
    """A device cache holding PERSON's real template (from their first photo) and card."""
    folder = tmp_path_factory.mktemp("kiosk-cache")
    provider = FileKeyProvider(folder / "keys")
    ensure_keys(provider, (CACHE_DB,))
    store = DeviceCache.open(folder / "cache.db", provider)
    store.adopt_claim_key(bytes(32 * [7]))  # the site's claim key, as a sync answer brings it
    report, template = judge(pipeline, read_image(person_images(faces, PERSON, 0, 1)[0]))
    assert template is not None, f"{PERSON}'s first photo fails the enrollment profile: {report.codes}"
    store.apply_changes(0, 1, [CacheEntry("s-zhang", template, 1, mask_name(NAME), store.claim_of(CARD))], [])
    store.confirm_current()
    yield store
    store.close()


# -- the screen: two kiosk pages in Chromium ----------------------------------------------------
@pytest.fixture(scope="module")
def face_decider(cache, pipeline) -> CacheFaceDecider:
    return CacheFaceDecider(cache, (pipeline.embedder_pack.id, pipeline.embedder_pack.version), pipeline.threshold)


@pytest.fixture(scope="module")
def door(pipeline, face_decider):
    """Two kiosk displays (zh_CN, en) behind one daemon display, each served on 127.0.0.1, and
    a Chromium page on each."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium package (browsers are never downloaded)")
    REPORTS.mkdir(parents=True, exist_ok=True)
    displays = {lang: KioskDisplay(lang, Preview(fps=15.0, width=480), door_notice(lang)) for lang in VIEWPORTS}
    servers = {lang: KioskServer(display, 0).start() for lang, display in displays.items()}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            pages = {}
            for lang, server in servers.items():
                pages[lang] = browser.new_page(viewport=VIEWPORTS[lang])
                pages[lang].goto(server.url)
            yield Kiosk(displays, pages, pipeline, face_decider)
            browser.close()
    finally:
        for server in servers.values():
            server.stop()


class Kiosk:
    """The pages, the displays behind them, and one daemon display feeding both."""

    def __init__(self, displays: dict[str, KioskDisplay], pages: dict, pipeline, face_decider: CacheFaceDecider):
        self.displays, self.pages, self.pipeline, self.face_decider = displays, pages, pipeline, face_decider
        self.camera = Camera()
        self.log = ConsoleDisplay()
        self.display = Displays(self.log, *displays.values())
        self.actuator = LogActuator()

    @property
    def screen(self):
        return self.displays["en"].screen

    def showing(self, state: State) -> Callable[[], bool]:
        return lambda: self.screen.state is state

    def daemon(self, liveness=None, challenge=None, credentials=None) -> EdgeDaemon:
        return EdgeDaemon(EdgeSettings("door-k", burst_frames=3, cool_down_s=1.0), self.pipeline, self.face_decider,
                          liveness=liveness, actuator=self.actuator, display=self.display, challenge=challenge,
                          credentials=credentials)

    def shoot(self, state: State, preview: bool = True, name: str = "") -> dict[str, dict[str, str]]:
        """Wait until each page shows ``state`` (and a preview frame), save its screenshot
        (``<lang>-<name or state>.png``) and return what each page reads."""
        seen = {}
        for lang, page in self.pages.items():
            page.wait_for_function(f"() => document.body.dataset.state === '{state.value}'", timeout=WAIT_MS)
            if preview:
                page.wait_for_function("() => { const i = document.getElementById('preview');"
                                       " return i && i.complete && i.naturalWidth > 0; }", timeout=WAIT_MS)
            page.screenshot(path=str(REPORTS / f"{lang}-{name or state.value}.png"))
            seen[lang] = {part: page.inner_text(f"#{part}") for part in ("headline", "message", "footer")}
        return seen


def say(lang: str, message: str, **params: str) -> str:
    return i18n.gettext(lang, "door", message).format(**params)


# -- the states, in the order a morning at the door brings them -------------------------------
def test_the_page_is_the_idle_screen_with_the_notice_and_the_alternative_before_any_frame(door):
    for lang, page in door.pages.items():
        page.wait_for_function("() => document.body.dataset.state === 'idle'", timeout=WAIT_MS)
        assert page.inner_text("#message") == say(lang, IDLE_TEXT)
        assert page.inner_text(".alternative") == say(lang, ALTERNATIVE_TEXT)
        notice = door_notice(lang)
        assert notice.version in page.inner_text(".notice")
        assert notice.text.strip().splitlines()[1][:12] in page.inner_text(".notice")  # what is collected
    assert door.pages["zh_CN"].get_attribute("html", "lang") == "zh-CN"


def test_guidance_a_dark_face_is_asked_for_more_light(door, faces, tmp_path):
    dark = [(read_image(path) * DARK).astype(np.uint8) for path in person_images(faces, PERSON, 1, 1)]
    daemon = door.daemon()
    daemon.run(door.camera.replay(folder_of(tmp_path, "dark", dark), door.showing(State.GUIDANCE)))
    seen = door.shoot(State.GUIDANCE)
    assert seen["zh_CN"]["message"] == "脸部光线不足,请到明亮处"
    assert seen["en"]["message"] == "More light on your face, please"
    door.guidance_daemon = daemon


def test_idle_when_the_person_walks_away(door, tmp_path):
    empty = folder_of(tmp_path, "empty", no_face_pictures(8))
    door.guidance_daemon.run(door.camera.replay(empty, door.showing(State.IDLE)))
    seen = door.shoot(State.IDLE)
    assert seen["zh_CN"]["message"] == "请正对摄像头" and seen["en"]["message"] == IDLE_TEXT


def _blink_first_seed() -> int:
    """A seed whose one-step challenge asks for a blink (what the screenshot shows)."""
    for seed in range(1000):
        steps = draw_steps(random.Random(seed), SETTINGS.minimum, SETTINGS.maximum, SETTINGS.step_timeout_s,
                           SETTINGS.max_delay_s)
        if steps[0].action is Action.BLINK:
            return seed
    raise AssertionError("no seed asks for a blink first")


def test_challenge_then_alarm_when_the_face_never_blinks(door, yale, active_checker, tmp_path):
    """A still face (a photo) is asked to blink, never does: the challenge times out, liveness
    fails and the alarm screen says staff are alerted."""
    runner = ChallengeRunner(SETTINGS, random.Random(_blink_first_seed()))
    daemon = door.daemon(liveness=active_checker, challenge=runner)
    still = folder_of(tmp_path, "still", [yale / YALE_SUBJECT / "normal.png"])
    blink = "Blink both eyes"
    daemon.run(door.camera.replay(still, lambda: door.screen.message == blink))
    seen = door.shoot(State.CHALLENGE)
    assert seen["zh_CN"]["message"] == "请眨眼" and seen["en"]["message"] == "Please blink"
    daemon.run(door.camera.replay(still, door.showing(State.ALARM)))
    seen = door.shoot(State.ALARM)
    assert seen["zh_CN"]["headline"] == "报警" and seen["zh_CN"]["footer"] == "已通知工作人员"
    assert seen["en"]["message"] == "Not recognised. Please see staff."
    assert "Liveness check not completed" in door.log.lines


def test_step_up_a_face_not_clearly_live_is_asked_a_challenge(door, yale, config, checker, tmp_path):
    """At ``passive+stepup`` a face whose passive score sits inside the band (chosen here above the
    Yale face's own margin) first reads that a further check follows, then the prompt."""
    image = read_image(yale / YALE_SUBJECT / "normal.png")
    first = checker.judge([image] * 3, [door.pipeline.analyze(image).face] * 3, level="passive+motion")
    assert first.live, first.reasons
    band = live_margin(first.score, first.threshold) + 1.0
    settings = dataclasses.replace(config.liveness, level=STEP_UP, step_up_margin=band)
    stepup = LivenessChecker(settings, door.pipeline.registry, calibration=checker.calibration)
    runner = ChallengeRunner(SETTINGS, random.Random(_blink_first_seed()), step_up=True)
    daemon = door.daemon(liveness=stepup, challenge=runner)
    still = folder_of(tmp_path, "still", [yale / YALE_SUBJECT / "normal.png"])
    daemon.run(door.camera.replay(still, lambda: door.screen.message == STEP_UP_TEXT))
    seen = door.shoot(State.CHALLENGE, name="stepup")
    assert seen["zh_CN"]["message"] == "还需一步验证:请按提示操作"
    assert seen["en"]["message"] == STEP_UP_TEXT
    daemon.run(door.camera.replay(still, lambda: door.screen.message == "Blink both eyes"))
    seen = door.shoot(State.CHALLENGE, name="stepup-prompt")
    assert seen["zh_CN"]["message"] == "请眨眼" and seen["en"]["message"] == "Please blink"
    assert door.log.lines[-2:] == [STEP_UP_TEXT, "Blink both eyes"]


def test_accepted_with_the_masked_name(door, faces, tmp_path):
    daemon = door.daemon()
    camera = folder_of(tmp_path, "person", person_images(faces, PERSON, 1, 4))
    (record,) = daemon.run(door.camera.replay(camera, door.showing(State.ACCEPTED)))
    assert record.outcome == "accepted" and door.actuator.openings >= 1
    seen = door.shoot(State.ACCEPTED)
    assert seen["zh_CN"]["message"] == say("zh_CN", WELCOME_TEXT, name="张*") == "欢迎您,张*"
    assert seen["en"] == {"headline": "Access granted", "message": "Welcome 张*", "footer": ""}
    assert NAME not in door.pages["en"].content()  # only the masked name reaches the screen


def test_refused_a_stranger_is_not_recognised(door, faces, tmp_path):
    daemon = door.daemon()
    camera = folder_of(tmp_path, "stranger", person_images(faces, STRANGER, 0, 4))
    (record,) = daemon.run(door.camera.replay(camera, door.showing(State.REFUSED)))
    assert (record.outcome, record.reason) == ("rejected", "no_match")
    seen = door.shoot(State.REFUSED)
    assert seen["zh_CN"] == {"headline": "验证未通过", "message": "未能识别", "footer": ""}
    assert seen["en"]["message"] == "Not recognised"


def test_unavailable_when_nobody_can_decide(door, faces, tmp_path):
    door.face_decider.offline = True
    try:
        daemon = door.daemon()
        camera = folder_of(tmp_path, "person", person_images(faces, PERSON, 1, 4))
        (record,) = daemon.run(door.camera.replay(camera, door.showing(State.UNAVAILABLE)))
    finally:
        door.face_decider.offline = False
    assert record.outcome == "unavailable"
    seen = door.shoot(State.UNAVAILABLE)
    assert seen["zh_CN"]["message"] == "人脸识别暂不可用,请刷卡" and seen["en"]["message"] == UNAVAILABLE_TEXT


def test_alternative_a_card_door_offers_card_or_pin_and_a_card_opens(door, cache, tmp_path):
    """A ``card|pin`` door runs no camera pass: the screen offers the alternative, and the card
    the cache knows opens (decided by the real credential decider over the cache)."""
    credentials = CredentialDecider(None, cache, DoorModeSchedule(DoorMode.CARD_OR_PIN), pin_attempts=3,
                                    pin_lockout_s=60.0, answer_timeout_s=0.1)
    daemon = door.daemon(credentials=credentials)
    empty = folder_of(tmp_path, "empty", no_face_pictures(4))
    daemon.run(door.camera.replay(empty, door.showing(State.ALTERNATIVE)))
    seen = door.shoot(State.ALTERNATIVE)
    assert seen["zh_CN"] == {"headline": "人脸识别之外的通行方式", "message": "请刷卡或输入密码", "footer": ""}
    assert seen["en"]["message"] == ALTERNATIVE_TEXT
    daemon.reader.present(CARD)
    (record,) = daemon.run(door.camera.replay(empty, door.showing(State.ACCEPTED)))
    assert (record.outcome, record.display_name, record.decided_by) == ("accepted", "张*", "local")
    for page in door.pages.values():
        page.wait_for_function("() => document.body.dataset.state === 'accepted'", timeout=WAIT_MS)
    daemon.run(door.camera.replay(empty, door.showing(State.ALTERNATIVE)))  # after the cool-down: the offer again


def test_the_other_orientation_reads_as_well(door):
    """zh_CN in landscape and en in portrait: nothing cut off (the notice fits its box)."""
    for lang, page in door.pages.items():
        other = {"width": VIEWPORTS[lang]["height"], "height": VIEWPORTS[lang]["width"]}
        page.set_viewport_size(other)
        page.screenshot(path=str(REPORTS / f"{lang}-alternative-{'landscape' if lang == 'zh_CN' else 'portrait'}.png"))
        overflow = page.evaluate("() => { const n = document.querySelector('.notice');"
                                 " return n.scrollHeight - n.clientHeight; }")
        assert overflow <= 1, f"{lang}: the notice is cut off by {overflow}px"
        page.set_viewport_size(VIEWPORTS[lang])
