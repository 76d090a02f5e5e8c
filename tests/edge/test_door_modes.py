"""Door modes: the mode per schedule (a window crossing midnight in the site's time zone), the
configuration table, and the card/PIN decider on a real device cache with no matcher."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from appliance.config import load_config
from appliance.config.mode_tables import DoorModeConfig, ModeWindow
from appliance.edge.door_modes import (
    CARD, PIN, Credential, CredentialDecider, DoorMode, DoorModeSchedule, accepts_credential, needs_face, offers_face,
)
from appliance.errors import ApplianceError
from appliance.protocol import messages
from appliance.security.keys import CACHE_DB, FileKeyProvider, ensure_keys
from appliance.matching.credentials import hash_pin
from appliance.stores.claims import CLAIM_KEY
from appliance.stores.device import CacheEntry, DeviceCache
from appliance.vision.templates import Template

SHANGHAI = ZoneInfo("Asia/Shanghai")
SITE_KEY = bytes(32 * [7])  # the site's claim key as a sync answer would bring it
NIGHT = {"mon": ["22:00-06:00"], "tue": ["22:00-06:00"]}  # Monday night into Tuesday, then Tuesday night


def test_the_modes_and_what_each_accepts():
    assert [m.value for m in DoorMode] == ["face", "card+face", "card|pin", "face|card"]
    assert [needs_face(m) for m in DoorMode] == [True, True, False, False]
    assert [offers_face(m) for m in DoorMode] == [True, True, False, True]  # card|pin: no camera, no face prompt
    assert [accepts_credential(m, CARD) for m in DoorMode] == [False, False, True, True]
    assert [accepts_credential(m, PIN) for m in DoorMode] == [False, False, True, False]


def night_schedule() -> DoorModeSchedule:
    config = DoorModeConfig(mode=DoorMode.FACE, time_zone="Asia/Shanghai",
                            windows=(ModeWindow(DoorMode.CARD_OR_PIN, NIGHT),), holidays=("2026-12-01",))
    return DoorModeSchedule.from_config(config)


@pytest.mark.parametrize("local, expected", [
    (datetime(2026, 11, 30, 21, 59), DoorMode.FACE),  # Monday, before the window
    (datetime(2026, 11, 30, 22, 0), DoorMode.CARD_OR_PIN),  # Monday night
    (datetime(2026, 11, 30, 23, 59), DoorMode.CARD_OR_PIN),
    (datetime(2026, 12, 1, 0, 0), DoorMode.CARD_OR_PIN),  # midnight: Monday's window goes on into Tuesday
    (datetime(2026, 12, 1, 5, 59), DoorMode.CARD_OR_PIN),
    (datetime(2026, 12, 1, 6, 0), DoorMode.FACE),  # the window ends (end exclusive)
    # Tuesday 1 December is a holiday: its own window is closed ("closed" is the default rule)
    (datetime(2026, 12, 1, 22, 30), DoorMode.FACE),
    (datetime(2026, 12, 2, 1, 0), DoorMode.FACE),  # and its spill-over past midnight too
])
def test_the_mode_follows_the_schedule_in_the_sites_time_zone(local, expected):
    assert night_schedule().mode_at(local.replace(tzinfo=SHANGHAI)) == expected


def test_the_same_instant_in_another_zone_gives_the_same_mode():
    schedule = night_schedule()
    at = datetime(2026, 11, 30, 16, 30, tzinfo=timezone.utc)  # 00:30 on Tuesday in Shanghai
    assert schedule.mode_at(at) == DoorMode.CARD_OR_PIN
    assert schedule.mode_at(at.replace(hour=12)) == DoorMode.FACE  # 20:00 on Monday in Shanghai


def test_the_configuration_file_gives_the_door_mode(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_text('[door_mode]\nmode = "face|card"\ntime_zone = "Asia/Shanghai"\npin_attempts = 4\n'
                    '[[door_mode.windows]]\nmode = "card|pin"\nschedule = { sat = ["00:00-24:00"] }\n',
                    encoding="utf-8")
    config = load_config(path).door_mode
    assert (config.mode, config.pin_attempts) == (DoorMode.FACE_OR_CARD, 4)
    schedule = DoorModeSchedule.from_config(config)
    assert schedule.mode_at(datetime(2026, 12, 5, 12, 0, tzinfo=SHANGHAI)) == DoorMode.CARD_OR_PIN  # Saturday
    assert schedule.mode_at(datetime(2026, 12, 4, 12, 0, tzinfo=SHANGHAI)) == DoorMode.FACE_OR_CARD
    path.write_text('[door_mode]\nmode = "card"\n', encoding="utf-8")
    with pytest.raises(ApplianceError, match="door_mode.mode"):
        load_config(path)
    path.write_text('[door_mode]\npin_attempts = 0\n', encoding="utf-8")
    with pytest.raises(ApplianceError, match="pin_attempts"):
        load_config(path)


@pytest.fixture
def cache(tmp_path):
    provider = FileKeyProvider(tmp_path / "keys")
    ensure_keys(provider, (CACHE_DB,))
    store = DeviceCache.open(tmp_path / "cache.db", provider)
    store.adopt_claim_key(SITE_KEY)
    vector = np.ones(4, np.float32) / 2
    store.apply_changes(0, 1, [
        CacheEntry("s-alice", Template(vector, "pack", "1"), 1, "A**e", store.claim_of("C-1"), pin=hash_pin("4321")),
        # refused face recognition: no template, a card and a PIN
        CacheEntry("s-bo", Template(np.zeros(0, np.float32), "pack", "1"), 1, "B*", store.claim_of("C-2"),
                   pin=hash_pin("2468"), face_refused=True)], [])
    store.confirm_current()
    yield store
    store.close()


class Outbox:
    def __init__(self):
        self.sent = []

    def submit(self, kind, message):
        self.sent.append((kind, message))


def decider_for(cache, mode: DoorMode, clock=lambda: 1_000_000.0) -> tuple[CredentialDecider, Outbox]:
    outbox = Outbox()
    decider = CredentialDecider(None, cache, DoorModeSchedule(mode), pin_attempts=3, pin_lockout_s=60.0,
                                answer_timeout_s=0.1, pump=outbox, clock=clock)
    return decider, outbox


def test_without_a_matcher_a_card_the_cache_knows_opens_and_the_event_goes_to_the_outbox(cache):
    decider, outbox = decider_for(cache, DoorMode.CARD_OR_PIN)
    decision = decider.decide(Credential(CARD, "C-1"), "door-a")
    assert (decision.accepted, decision.reason, decision.display_name, decision.subject) == \
        (True, messages.Reason.MATCH, "A**e", "s-alice")
    assert decider.last_source == "local"
    kind, event = outbox.sent[-1]
    assert kind == "event" and event.kind == "credential_decision"
    assert event.details["credential"] == CARD and event.details["mode"] == "card|pin"
    assert "C-1" not in event.encode().decode()  # never the card number
    unknown = decider.decide(Credential(CARD, "C-999"), "door-a")
    assert (unknown.accepted, unknown.reason) == (False, messages.Reason.UNKNOWN_CLAIM)


def test_a_face_door_refuses_a_card_alone_and_the_cache_checks_a_pin_offline(cache):
    decider, _ = decider_for(cache, DoorMode.FACE)
    assert decider.decide(Credential(CARD, "C-1"), "door-a").reason == messages.Reason.BAD_REQUEST
    decider, _ = decider_for(cache, DoorMode.CARD_OR_PIN)
    decision = decider.decide(Credential(PIN, "C-1", "4321"), "door-a")
    assert (decision.accepted, decision.subject, decision.display_name) == (True, "s-alice", "A**e")
    assert decider.decide(Credential(PIN, "C-1", "0000"), "door-a").reason == messages.Reason.NO_MATCH


def test_a_wrong_pin_locks_the_keypad_after_the_limit_offline(cache):
    decider, _ = decider_for(cache, DoorMode.CARD_OR_PIN)
    for _ in range(3):
        assert decider.decide(Credential(PIN, "C-1", "1111"), "door-a").reason == messages.Reason.NO_MATCH
    locked = decider.decide(Credential(PIN, "C-1", "4321"), "door-a")  # even the right PIN, until the lockout ends
    assert (locked.accepted, locked.reason) == (False, messages.Reason.LOCKED_OUT)


def test_a_face_refusing_person_passes_a_face_door_offline_by_card_and_pin(cache):
    decider, _ = decider_for(cache, DoorMode.FACE)
    assert decider.decide(Credential(PIN, "C-2", "2468"), "door-a").subject == "s-bo"
    assert decider.decide(Credential(PIN, "C-1", "4321"), "door-a").reason == messages.Reason.BAD_REQUEST
    assert cache.local_view("pack", "1")[0] == ["s-alice"]  # no face: never in the gallery


def test_the_cache_holds_keyed_claims_only_and_a_new_key_empties_it(cache):
    import hashlib

    rows = cache.execute("SELECT claim FROM cached").fetchall()
    unkeyed = {hashlib.sha256(b"appliance/claim/v1|" + c.encode()).hexdigest() for c in ("C-1", "C-2")}
    assert all(len(r[0]) == 64 for r in rows) and not unkeyed & {r[0] for r in rows}
    held = repr(cache.execute("SELECT * FROM cached").fetchall())  # decrypted: what a stolen cache and key show
    assert "C-1" not in held and "C-2" not in held
    assert cache.adopt_claim_key(bytes(range(32))) and cache.count() == 0 and cache.revision == 0
    assert not cache.adopt_claim_key(bytes(range(32)))  # the same key again: nothing to do
    assert cache.keys.get(CLAIM_KEY).material == bytes(range(32))


def test_repeated_unknown_cards_lock_that_card_for_the_lockout(cache):
    now = [1_000_000.0]
    decider, _ = decider_for(cache, DoorMode.FACE_OR_CARD, clock=lambda: now[0])
    for _ in range(3):
        assert decider.decide(Credential(CARD, "C-404"), "door-a").reason == messages.Reason.UNKNOWN_CLAIM
    locked = decider.decide(Credential(CARD, "C-404"), "door-a")
    assert (locked.reason, locked.retry_after_s) == (messages.Reason.LOCKED_OUT, 60.0)
    assert decider.decide(Credential(CARD, "C-1"), "door-a").accepted  # another card is not locked
    now[0] += 61
    assert decider.decide(Credential(CARD, "C-404"), "door-a").reason == messages.Reason.UNKNOWN_CLAIM


def test_a_cache_that_never_synced_cannot_say_no(tmp_path):
    provider = FileKeyProvider(tmp_path / "keys")
    ensure_keys(provider, (CACHE_DB,))
    empty = DeviceCache.open(tmp_path / "empty.db", provider)
    try:
        decider, _ = decider_for(empty, DoorMode.CARD_OR_PIN)
        assert decider.decide(Credential(CARD, "C-1"), "door-a").reason == messages.Reason.UNAVAILABLE
    finally:
        empty.close()


def test_an_offline_card_pass_meets_the_doors_access_rules(cache):
    from appliance.access.rules import OUTSIDE_SCHEDULE, AccessPolicy, DoorRules, Subject
    from appliance.access.schedule import WeeklySchedule
    from appliance.matching import Verdict

    rules = DoorRules("door-a", True, "Asia/Shanghai", {"day": WeeklySchedule.from_mapping({"mon": ["08:00-18:00"]})})
    policy = AccessPolicy({"door-a": rules})

    def admit(door: str, verdict: Verdict, pass_id: str) -> Verdict:  # as the daemon's: the face passes' own check
        if not verdict.accepted:
            return verdict
        access = policy.decide(Subject(verdict.subject_id, frozenset({"day"})), door, datetime.fromtimestamp(
            clock[0], timezone.utc), pass_id)
        return verdict if access.granted else Verdict(False, access.reason, verdict.subject_id)

    clock = [datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI).timestamp()]  # Monday 09:00
    decider = CredentialDecider(None, cache, DoorModeSchedule(DoorMode.CARD_OR_PIN), pin_attempts=3,
                                pin_lockout_s=60.0, answer_timeout_s=0.1, admit=admit, clock=lambda: clock[0])
    assert decider.decide(Credential(CARD, "C-1"), "door-a").accepted
    clock[0] = datetime(2026, 11, 30, 19, 0, tzinfo=SHANGHAI).timestamp()  # Monday evening: outside the grant
    refused = decider.decide(Credential(CARD, "C-1"), "door-a")
    assert (refused.accepted, refused.reason, refused.subject) == (False, OUTSIDE_SCHEDULE, "")
