"""Cards and PINs in the pass loop, per door mode: the real daemon and pipeline (frames of an
empty scene), the real credential decider over a real SQLCipher device cache, no matcher."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.capture.sources import Frame
from appliance.edge.credential_pass import CARD_HELD_TEXT
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.door_modes import CredentialDecider, DoorMode, DoorModeSchedule
from appliance.edge.door_pass import CARD_TEXT
from appliance.edge.hardware import ConsoleDisplay, LogActuator
from appliance.edge.kiosk.screen import ALTERNATIVE_TEXT, CARD_INVALID_TEXT, ScreenState, State
from appliance.matching.credentials import hash_pin
from appliance.security.keys import CACHE_DB, FileKeyProvider, ensure_keys
from appliance.stores.device import CacheEntry, DeviceCache
from appliance.vision.templates import Template

FPS = 10.0
CARD = "C-77"
REFUSER = "C-88"  # the card of a person who refused face recognition


@pytest.fixture
def cache(tmp_path):
    provider = FileKeyProvider(tmp_path / "keys")
    ensure_keys(provider, (CACHE_DB,))
    store = DeviceCache.open(tmp_path / "cache.db", provider)
    store.adopt_claim_key(bytes(32 * [7]))  # the site's claim key, as a sync answer brings it
    vector = np.ones(4, np.float32) / 2
    store.apply_changes(0, 1, [
        CacheEntry("s-li", Template(vector, "pack", "1"), 1, "李*", store.claim_of(CARD)),
        # refused face recognition: no template; card + PIN
        CacheEntry("s-wang", Template(np.zeros(0, np.float32), "pack", "1"), 1, "王*", store.claim_of(REFUSER),
                   pin=hash_pin("4321"), face_refused=True)], [])
    store.confirm_current()
    yield store
    store.close()


def empty_frames(count: int, start: float = 100.0):
    for index in range(count):
        yield Frame(np.zeros((64, 64, 3), np.uint8), index, 1_700_000_000.0 + index / FPS, start + index / FPS)


def door(pipeline, cache, mode: DoorMode):
    display, actuator = ConsoleDisplay(), LogActuator()
    credentials = CredentialDecider(None, cache, DoorModeSchedule(mode), pin_attempts=3, pin_lockout_s=60.0,
                                    answer_timeout_s=0.1)
    daemon = EdgeDaemon(EdgeSettings("door-c", cool_down_s=0.5), pipeline, None, actuator=actuator,
                        display=display, credentials=credentials)
    return daemon, display, actuator


def states(display: ConsoleDisplay) -> list[tuple[str, str]]:
    return [(s.state.value, s.text) for s in display.screens]


def test_a_card_or_pin_door_offers_the_alternative_and_a_known_card_opens(pipeline, cache):
    daemon, display, actuator = door(pipeline, cache, DoorMode.CARD_OR_PIN)
    assert daemon.run(empty_frames(3)) == []
    assert states(display) == [("alternative", ALTERNATIVE_TEXT)]  # no camera pass: the offer, once
    daemon.reader.present(CARD)
    (record,) = daemon.run(empty_frames(40, start=200.0))  # past the cool-down and PROMPT_S
    assert (record.outcome, record.display_name, record.subject, record.decided_by) == ("accepted", "李*", "s-li",
                                                                                         "local")
    assert actuator.openings == 1 and display.screens[1] == ScreenState.of(State.ACCEPTED, "Welcome {name}",
                                                                           name="李*")
    assert display.screens[-1].state is State.ALTERNATIVE  # after the cool-down: the offer again
    daemon.reader.present("C-00")  # a card the cache does not know
    first, record = daemon.run(empty_frames(2, start=300.0))  # run() answers every pass so far
    assert (record.outcome, record.reason) == ("rejected", "unknown_claim")
    assert (display.screens[-1].state, display.screens[-1].message) == (State.REFUSED, CARD_INVALID_TEXT)


def test_a_face_or_card_door_opens_for_a_card_alone(pipeline, cache):
    daemon, display, actuator = door(pipeline, cache, DoorMode.FACE_OR_CARD)
    daemon.reader.present(CARD)
    (record,) = daemon.run(empty_frames(2))
    assert record.outcome == "accepted" and actuator.openings == 1


def test_a_card_at_a_face_door_is_held_and_the_pin_is_offered(pipeline, cache):
    """The alternative for a person who does not use face recognition: card, then PIN,
    checked by the cache (it holds the PIN verifier) with no matcher."""
    daemon, display, actuator = door(pipeline, cache, DoorMode.FACE)
    daemon.reader.present(REFUSER)
    assert daemon.run(empty_frames(2)) == []
    assert (display.screens[-1].state, display.screens[-1].message) == (State.ALTERNATIVE, CARD_HELD_TEXT)
    daemon.reader.present("4321", "pin")
    (record,) = daemon.run(empty_frames(2, start=200.0))
    assert (record.outcome, record.reason) == ("accepted", "match") and actuator.openings == 1
    assert display.screens[-1].state == State.ACCEPTED


def test_a_pin_without_a_card_asks_for_the_card(pipeline, cache):
    daemon, display, _ = door(pipeline, cache, DoorMode.CARD_OR_PIN)
    daemon.reader.present("4321", "pin")
    assert daemon.run(empty_frames(2)) == []
    assert (display.screens[-1].state, display.screens[-1].message) == (State.ALTERNATIVE, CARD_TEXT)


def test_a_malformed_card_number_is_refused_on_screen_and_nothing_opens(pipeline, cache):
    daemon, display, actuator = door(pipeline, cache, DoorMode.CARD_OR_PIN)
    daemon.reader.present("no spaces allowed!")
    assert daemon.run(empty_frames(2)) == [] and actuator.openings == 0
    assert (display.screens[-1].state, display.screens[-1].message) == (State.REFUSED, CARD_INVALID_TEXT)
