"""Honest states at the door, on a real broker with real stores: with no matcher and no usable
cache the door says it cannot decide (never "no match"), shows why, reports it in its status,
and its alarm reaches the matcher when the broker is back. A synced cache that lacks the
person still says no_match: that is a true answer."""
from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from appliance.access.schedule import WEEKDAYS
from appliance.capture.images import read_image
from appliance.capture.sources import FolderReplaySource
from appliance.edge.cache_decider import ALARM_KIND, NEVER_SYNCED, STALE
from appliance.config.mode_tables import DoorMode
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.door_modes import CARD, Credential, CredentialDecider, DoorModeSchedule
from appliance.edge.hardware import READY_TEXT, UNAVAILABLE_TEXT, ConsoleDisplay, LogActuator
from appliance.edge.offline import CACHE_FILE, OUTBOX_FILE, device_folder, open_door
from appliance.matcher.access_admin import AccessAdmin
from appliance.matcher.eligibility import restamp_credentials
from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import messages
from diskkit import fill, small_disk
from offkit import (ADMIN, OPERATOR, PACK, enroll_person, enroll_real_person, make_site, offline_config, probe_of,
                    request, start_matcher, wait_for)

RECONNECT_S = 40  # paho's reconnect back-off (up to 30 s) after the broker comes back
FRAMES_PER_IMAGE = 3  # one burst per pass


@pytest.fixture(scope="module")
def site(tmp_path_factory, config):
    made = make_site(tmp_path_factory.mktemp("unavailable-site"), config, people=4)
    yield made
    made.broker.stop()
    made.data.close()


@pytest.fixture
def broker_back(site):
    """Whatever a test did to the broker, the next one finds it running."""
    yield site.broker
    site.broker.start()


def forget_cache(site, device: str) -> None:
    """The device as freshly provisioned: no cache ever synced, nothing queued."""
    for name in (CACHE_FILE, OUTBOX_FILE):
        for suffix in ("", "-wal", "-shm"):
            (device_folder(site, device) / (name + suffix)).unlink(missing_ok=True)


def alarm_recorded(site, matcher, device: str, alarm: messages.Alarm) -> bool:
    """The matcher recorded the alarm (exactly-once event store) and logged it."""
    if alarm.alarm_id not in matcher.store.event_ids(device):
        return False
    return any(e.action == f"alarm.{ALARM_KIND}" and e.device == device for e in site.data.audit.entries())


def test_no_matcher_and_a_never_synced_cache_is_unavailable_then_the_alarm_arrives(site, broker_back):
    forget_cache(site, "door-a")
    subject, vector = next(iter(site.people.items()))
    site.broker.stop()
    door = open_door(site, "door-a", offline_config(mode="central"), threshold=0.4)
    matcher = None
    try:
        status = door.decider.status
        assert (status.matcher_reachable, status.decision_available, status.cache) == (False, False, NEVER_SYNCED)
        for _ in range(3):  # an enrolled person: the door cannot tell, and says so
            decision = door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK)
            assert not decision.accepted and decision.reason == messages.Reason.UNAVAILABLE
        assert door.decider.stats["alarms"] == 1 and door.outbox.depth() == 1  # one alarm per outage, queued
        alarm = door.decider.last_alarm
        assert alarm.kind == ALARM_KIND and alarm.details["cache"] == NEVER_SYNCED
        assert alarm.details["broker_connected"] is False and alarm.details["cache_revision"] == 0

        site.broker.start()
        matcher = start_matcher(site)
        assert wait_for(lambda: alarm_recorded(site, matcher, "door-a", alarm), RECONNECT_S), dict(matcher.stats)
        assert wait_for(lambda: door.outbox.depth() == 0)  # acknowledged, dropped from the outbox
        assert door.sync.wait_current(RECONNECT_S)
        assert wait_for(lambda: door.decider.matcher_reachable and door.decider.decision_available)
        assert door.decider.status.cache == "usable"
        assert door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK).accepted
    finally:
        door.close()
        if matcher is not None:
            matcher.stop()
            matcher.store.close()


def test_a_synced_cache_without_the_person_still_says_no_match(site, broker_back):
    matcher = start_matcher(site)
    door = open_door(site, "door-b", offline_config(mode="central", answer_timeout_ms=300), threshold=0.4)
    running = True
    try:
        assert door.sync.wait_current(10)
        central_only, central_vector = enroll_person(site.data, site.rng, "Central Only", local=False)
        assert wait_for(lambda: door.cache.revision == site.data.biometric.revision)
        assert central_only not in door.cache.subject_ids()
        matcher.stop()
        running = False
        site.broker.stop()
        assert wait_for(lambda: not door.link.online)
        status = door.decider.status
        assert (status.matcher_reachable, status.decision_available, status.cache) == (False, True, "usable")
        decision = door.decider.request(request("door-b", probe_of(central_vector, site.rng)), PACK)
        assert not decision.accepted and decision.reason == messages.Reason.NO_MATCH
        subject, vector = next(iter(site.people.items()))
        assert door.decider.request(request("door-b", probe_of(vector, site.rng)), PACK).accepted
        assert door.decider.last_source == "local" and door.decider.stats["alarms"] == 0
    finally:
        door.close()
        if running:
            matcher.stop()
        matcher.store.close()


def test_a_stale_cache_is_unavailable_too_in_every_mode(site, broker_back):
    site.broker.stop()
    subject, vector = next(iter(site.people.items()))
    for mode in ("central", "local", "local-first"):
        door = open_door(site, "door-c", offline_config(mode=mode, max_cache_age_s=60, sync_wait_ms=100),
                         threshold=0.4)
        try:
            door.cache.confirm_current(now=time.time() - 3600)  # last confirmed an hour ago
            assert door.decider.status.cache == STALE and not door.decider.decision_available
            decision = door.decider.request(request("door-c", probe_of(vector, site.rng)), PACK)
            assert not decision.accepted and decision.reason == messages.Reason.UNAVAILABLE, mode
            assert door.decider.last_alarm.details["cache"] == STALE
        finally:
            door.close()


# -- the daemon at the door, with a real face ----------------------------------------------
def usable_image(pipeline, folder: Path) -> Path:
    """A real image of the person that passes the verification profile."""
    for path in sorted(folder.glob("*.jpg")):
        analysis, template = pipeline.template(read_image(path))
        if template is not None and analysis.quality.passed:
            return path
    raise AssertionError(f"no usable image in {folder}")


def frames_of(folder: Path, image: Path) -> FolderReplaySource:
    folder.mkdir(parents=True, exist_ok=True)
    for copy in range(FRAMES_PER_IMAGE):
        shutil.copy(image, folder / f"{copy:03d}{image.suffix}")
    return FolderReplaySource(folder)


def test_the_door_says_it_cannot_decide_and_recovers(site, pipeline, faces, tmp_path, broker_back):
    image = usable_image(pipeline, faces / "celeba-dev" / "id07201")
    enroll_real_person(site, pipeline, image, "Zhang San")
    forget_cache(site, "door-b")
    site.broker.stop()
    door = open_door(site, "door-b", offline_config(mode="central"), pipeline.threshold)
    display, actuator, emitted = ConsoleDisplay(), LogActuator(), []
    daemon = EdgeDaemon(EdgeSettings("door-b", cool_down_s=0.0), pipeline, door.decider, actuator=actuator,
                        display=display, emit=lambda kind, message: (emitted.append(message), door.emit(kind, message)))
    matcher = None
    try:
        assert daemon.decision_available is False
        (refused,) = daemon.run(frames_of(tmp_path / "offline", image).frames())
        assert (refused.outcome, refused.reason) == ("unavailable", messages.Reason.UNAVAILABLE)
        assert display.lines[-1] == UNAVAILABLE_TEXT and actuator.openings == 0
        assert not any(line.startswith("Not recognised") for line in display.lines)

        site.broker.start()
        matcher = start_matcher(site, threshold=pipeline.threshold)
        alarm = door.decider.last_alarm
        assert wait_for(lambda: alarm_recorded(site, matcher, "door-b", alarm), RECONNECT_S), dict(matcher.stats)
        # the pass itself reached the matcher too, as an event saying "unavailable"
        assert door.sync.wait_current(RECONNECT_S) and wait_for(lambda: door.outbox.depth() == 0)
        (event,) = [m for m in emitted if isinstance(m, messages.Event) and m.kind == "pass"]
        assert event.details["outcome"] == "unavailable" and event.event_id in matcher.store.event_ids("door-b")
        daemon._next_availability_check = 0.0  # look now rather than in a second
        daemon._watch_availability()
        assert daemon.decision_available is True and display.lines[-1] == READY_TEXT
        passes = daemon.run(frames_of(tmp_path / "online", image).frames())
        assert passes[-1].outcome == "accepted" and actuator.openings == 1
        assert display.lines[-1] == "Welcome Z**** S**"
    finally:
        door.close()
        if matcher is not None:
            matcher.stop()
            matcher.store.close()


@contextmanager
def hard_passback_door(site, pipeline, faces, identity: str, name: str, card: str = "") -> Iterator[tuple]:
    """(door, its folder, subject, image): ``name`` enrolled from a real image of ``identity`` (with ``card``,
    if given), let in at door-a, the entry of an area with hard anti-passback; door-a decides
    locally, its folder on a small tmpfs of its own."""
    image = usable_image(pipeline, faces / "celeba-dev" / identity)
    subject = enroll_real_person(site, pipeline, image, name)
    if card:
        site.data.identity.set_card(OPERATOR, subject, card)
        restamp_credentials(site.data, OPERATOR, subject)  # the doors learn the card's claim
    matcher = start_matcher(site, threshold=pipeline.threshold)
    access = AccessAdmin(site.data, matcher.store, ADMIN)
    access.put_group("lobby-users", {day: ["00:00-24:00"] for day in WEEKDAYS})
    access.grant_doors("lobby-users", ["door-a", "door-c"])
    access.set_member("lobby-users", subject)
    access.set_area("lobby", "hard", 3600, entries=["door-a"], exits=["door-c"])
    try:
        with small_disk(device_folder(site, "door-a")) as folder:
            door = open_door(site, "door-a", offline_config(mode="local"), pipeline.threshold)
            try:
                assert door.sync.wait_current(10) and door.cache.count() > 0
                assert door.cache.rules()["area"]["mode"] == "hard"
                yield door, folder, subject, image
            finally:
                door.close()
    finally:
        access.set_area("lobby", "off", 0, entries=["door-a"], exits=["door-c"])
        access.delete_group("lobby-users")
        matcher.stop()
        matcher.store.close()


def fill_with_room_only_in(folder: Path, fits, refused) -> Path:
    """Fill the door's disk (``folder``'s file system) as a disk fills on a door in service: the next write of the store
    ``fits`` goes into the WAL it has (written to before, now checkpointed: SQLite reuses it from its
    start), the next write of the store ``refused`` needs new room (its WAL truncated). Returns the
    filler: delete it to make room."""
    with fits.lock:
        fits.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    refused.checkpoint()
    return fill(folder)


def test_a_door_whose_disk_is_full_lets_nobody_through_unrecorded(site, pipeline, faces, tmp_path, broker_back):
    """A local pass is acted on only once its event is committed to the outbox. With the door's
    disk full (a real tmpfs, filled) the outbox refuses it (E213), so the person sees
    "unavailable" and the door stays locked; once there is room the same face is let in. The
    refused pass must not have put the person inside (hard anti-passback), or they would now be
    refused as a second entry: its anti-passback entry is rolled back with the event."""
    display, actuator = ConsoleDisplay(), LogActuator()
    with hard_passback_door(site, pipeline, faces, "id07203", "Li Si") as (door, folder, subject, image):
        daemon = EdgeDaemon(EdgeSettings("door-a", cool_down_s=0.0), pipeline, door.decider,
                            actuator=actuator, display=display, emit=door.emit)
        door.cache.set_presence("elsewhere", "someone", False, time.time())  # the cache's WAL in use
        filler = fill_with_room_only_in(folder, fits=door.cache, refused=door.outbox)
        (refused,) = daemon.run(frames_of(tmp_path / "full", image).frames())
        assert (refused.outcome, refused.reason) == ("unavailable", messages.Reason.UNAVAILABLE)
        assert display.lines[-1] == UNAVAILABLE_TEXT and actuator.openings == 0
        assert door.cache.presence("lobby", subject) is None
        filler.unlink()  # room made
        passes = daemon.run(frames_of(tmp_path / "room", image).frames())
        assert passes[-1].outcome == "accepted" and actuator.openings == 1
        assert door.outbox.depth() + door.pump.acked >= 1  # this time the pass is on record
        assert door.cache.presence("lobby", subject)[0]  # and the person is inside


def test_a_pass_on_record_stands_when_only_its_passback_entry_cannot_be_written(site, pipeline, faces, tmp_path,
                                                                                broker_back, caplog):
    """The other order on a full disk: the outbox takes the pass's event, then the cache cannot
    commit its anti-passback entry. The event is the record of the pass, so the door lets the
    person in and says in its log that the entry is missing."""
    display, actuator = ConsoleDisplay(), LogActuator()
    with hard_passback_door(site, pipeline, faces, "id07204", "Zhao Liu") as (door, folder, subject, image):
        daemon = EdgeDaemon(EdgeSettings("door-a", cool_down_s=0.0), pipeline, door.decider,
                            actuator=actuator, display=display, emit=door.emit)
        stranger = usable_image(pipeline, faces / "celeba-dev" / "id07206")  # never enrolled
        (no_match,) = daemon.run(frames_of(tmp_path / "stranger", stranger).frames())
        assert no_match.reason == messages.Reason.NO_MATCH  # its event: the outbox's WAL in use
        assert wait_for(lambda: door.outbox.depth() == 0, 10)
        queued = door.pump.acked
        filler = fill_with_room_only_in(folder, fits=door.outbox, refused=door.cache)
        passed = daemon.run(frames_of(tmp_path / "full", image).frames())[-1]  # run: every pass so far
        assert passed.outcome == "accepted" and actuator.openings == 1
        assert door.outbox.depth() + door.pump.acked == queued + 2  # on record: the decision and the pass events
        assert door.cache.presence("lobby", subject) is None
        assert "its anti-passback entry is not" in caplog.text
        filler.unlink()


def test_a_card_pass_refused_on_a_full_disk_puts_nobody_inside(site, pipeline, faces):
    """The card pass's side of ``recorded_pass``: the outbox refuses the pass's event, so the door
    gets no decision (the reader's pass ends "unavailable") and the anti-passback entry is rolled
    back; with room, the same card opens and the person is inside."""
    with hard_passback_door(site, pipeline, faces, "id07211", "Sun Qi", card="K-0711") as (door, folder, subject, _):
        # no matcher link: the cache decides every card (its events still go through the door's pump)
        cards = CredentialDecider(None, door.cache, DoorModeSchedule(DoorMode.CARD_OR_PIN), pin_attempts=3,
                                  pin_lockout_s=60.0, answer_timeout_s=1.0, pump=door.pump, admit=door.decider.admit)
        door.cache.set_presence("elsewhere", "someone", False, time.time())  # the cache's WAL in use
        filler = fill_with_room_only_in(folder, fits=door.cache, refused=door.outbox)
        with pytest.raises(ApplianceError) as refused:
            cards.decide(Credential(CARD, "K-0711"), "door-a")
        assert refused.value.code is ErrorCode.STORE_UNWRITABLE
        assert door.cache.presence("lobby", subject) is None
        filler.unlink()
        opened = cards.decide(Credential(CARD, "K-0711"), "door-a")
        assert (opened.accepted, opened.subject, cards.last_source) == (True, subject, "local")
        assert door.cache.presence("lobby", subject)[0]

