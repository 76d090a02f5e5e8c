"""A matcher whose disk is full, on a real broker with real doors. It keeps deciding (a decision
needs no disk: its audit entry waits in memory) and keeps answering the doors' sync requests
(unanswered, a door would take the matcher for gone and its cache would go stale). A door's
events are not acknowledged until they are recorded: the door keeps them. An enrollment is
refused with E213. A pass the matcher cannot record in the anti-passback book goes unanswered
without a strike against the door (the gate would in the end mute it as a flooder): the door
decides from its cache, and the pass reaches the book once there is room. Then every event is
recorded exactly once and every decision is in the audit chain.

The central stores live on a small tmpfs of their own (``Site(central=...)``), filled to the
last byte after every write-ahead log is truncated (so any write needs new room, whichever
store makes it); the broker and the doors' folders stay on the ordinary disk, as on a site
where only the central server's volume filled up. Mounting needs root, as CI runs (``diskkit``)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.access.schedule import WEEKDAYS
from appliance.config.mode_tables import DoorMode
from appliance.edge.door_modes import CARD, Credential, CredentialDecider, DoorModeSchedule
from appliance.edge.offline import open_door
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.access_admin import AccessAdmin
from appliance.protocol import messages, topics
from appliance.security.roles import Principal, Role
from diskkit import fill, small_disk
from offkit import ADMIN, PACK, enroll_person, make_site, offline_config, probe_of, request, start_matcher, wait_for

CENTRAL_BYTES = 16 * 1024 * 1024
PASSES = 12
# the door's resend, and the audit writer's pause after failed commits (doubling up to 10 s)
RECOVERY_S = 40.0
AUDITOR = Principal("auditor", Role.AUDITOR)
ANSWER_S = 0.3  # how long the door waits for the matcher before its cache decides


@pytest.fixture
def site(tmp_path, config):
    with small_disk(tmp_path / "central", CENTRAL_BYTES) as central:
        made = make_site(tmp_path / "site", config, people=4, central=central)
        try:
            yield made
        finally:
            made.broker.stop()
            made.data.close()


def fill_central(site, matcher) -> Path:
    """Fill the central volume with every store's write-ahead log truncated: the next write of
    any store needs new room. Returns the filler: delete it to make room."""
    for store in (*site.data.stores.values(), matcher.store):
        store.checkpoint()
    return fill(site.central)


def decisions_logged(site, device: str) -> list:
    return [entry for entry in site.data.audit.entries() if entry.device == device
            and entry.action.startswith("decision.")]


def refused_as_malformed(matcher) -> int:
    return matcher.stats["rejected:malformed"]


def test_a_matcher_on_a_full_disk_keeps_deciding_and_loses_no_event(site):
    matcher = start_matcher(site)
    door = open_door(site, "door-a", offline_config(mode="central", outbox_resend_s=1.0), threshold=0.4)
    try:
        assert door.sync.wait_current(10)
        logged_before = len(decisions_logged(site, "door-a"))
        filler = fill_central(site, matcher)
        sent = []
        people = list(site.people.values())
        for index in range(PASSES):
            decision = door.decider.request(request("door-a", probe_of(people[index % len(people)], site.rng)), PACK)
            assert decision.accepted and door.decider.last_source == "central", (index, decision)
            event = messages.Event(messages.new_id(), "door-a", "pass", time.time(), {"n": index})
            door.pump.submit(topics.EVENT, event)
            sent.append(event.event_id)
        writer = matcher.requests.audit.log.writer
        assert wait_for(lambda: writer.failure is not None, RECOVERY_S), writer.state()
        assert "full" in writer.failure.error and writer.depth >= PASSES
        # the events reached the matcher, which could not record them: none acknowledged, none lost
        assert wait_for(lambda: matcher.stats[f"unwritable:{topics.EVENT}"] > 0, RECOVERY_S), dict(matcher.stats)
        assert door.outbox.depth() == PASSES and matcher.stats["internal_error"] == 0
        assert set(sent).isdisjoint(matcher.store.event_ids("door-a"))
        # the door's sync request is answered although its acknowledgement cannot be recorded
        confirmed = door.cache.confirmed_at
        door.sync.request()
        assert wait_for(lambda: door.cache.confirmed_at > confirmed, RECOVERY_S)
        assert matcher.stats[f"unwritable:{topics.SYNC_ACK}"] >= 1 and not door.link.matcher_silent
        with pytest.raises(ApplianceError) as refused:  # an administrator's change: a clear error
            enroll_person(site.data, site.rng, "Full Disk")
        assert refused.value.code is ErrorCode.STORE_UNWRITABLE, refused.value

        filler.unlink()  # room made
        assert wait_for(lambda: door.outbox.depth() == 0, RECOVERY_S), door.outbox.depth()
        recorded = matcher.store.event_ids("door-a")
        assert set(sent) <= set(recorded) and len(recorded) == len(set(recorded))  # each once
        assert wait_for(lambda: writer.depth == 0 and writer.failure is None, RECOVERY_S), writer.state()
        assert len(decisions_logged(site, "door-a")) == logged_before + PASSES
        assert site.data.audit.verify(AUDITOR).ok
        assert refused_as_malformed(matcher) == 0
        enroll_person(site.data, site.rng, "Room Made")  # administrators' changes go through again
    finally:
        door.close()
        matcher.stop()
        matcher.store.close()


def test_a_pass_the_full_matcher_cannot_put_in_the_passback_book_is_the_doors_to_decide(site):
    """A face, then a card: each reaches the matcher, which cannot record the entry."""
    (subject, vector), (holder, _) = list(site.people.items())[:2]  # the holder's card: C-0001
    matcher = start_matcher(site)
    access = AccessAdmin(site.data, matcher.store, ADMIN)
    access.put_group("lobby-users", {day: ["00:00-24:00"] for day in WEEKDAYS})
    access.grant_doors("lobby-users", ["door-a", "door-c"])
    for member in (subject, holder):
        access.set_member("lobby-users", member)
    access.set_area("lobby", "hard", 3600, entries=["door-a"], exits=["door-c"])
    door = open_door(site, "door-a", offline_config(mode="central", answer_timeout_ms=int(ANSWER_S * 1000),
                                                    outbox_resend_s=1.0), threshold=0.4)
    cards = CredentialDecider(door.link, door.cache, DoorModeSchedule(DoorMode.CARD_OR_PIN), pin_attempts=3,
                              pin_lockout_s=300.0, answer_timeout_s=ANSWER_S, pump=door.pump)
    try:
        assert door.sync.wait_current(10) and door.cache.rules()["area"]["mode"] == "hard"
        filler = fill_central(site, matcher)
        decision = door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK)
        # the matcher could not record the entry: no answer, and the door's cache let the person in
        assert decision.accepted and door.decider.last_source == "local", decision
        assert matcher.stats[f"unwritable:{topics.REQUEST}"] == 1 and refused_as_malformed(matcher) == 0
        assert door.cache.presence("lobby", subject)[0]
        assert matcher.store.presence("lobby", subject) is None
        door.sync.request()  # answered (its acknowledgement not recorded): the matcher decides again
        assert wait_for(lambda: not door.link.matcher_silent, RECOVERY_S)
        card = cards.decide(Credential(CARD, "C-0001"), "door-a")
        assert card.accepted and cards.last_source == "local", card
        assert matcher.stats[f"unwritable:{topics.CREDENTIAL}"] == 1 and refused_as_malformed(matcher) == 0

        filler.unlink()  # room made: the door's passes reach the matcher and its book
        assert wait_for(lambda: door.outbox.depth() == 0, RECOVERY_S), door.outbox.depth()
        assert wait_for(lambda: matcher.stats["door_passes_merged"] == 2, RECOVERY_S), dict(matcher.stats)
        for person in (subject, holder):
            assert matcher.store.presence("lobby", person)[0]  # inside, for every replica
        again = door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK)
        assert not again.accepted and again.reason == "anti_passback"  # a second entry, refused
    finally:
        access.set_area("lobby", "off", 0, entries=["door-a"], exits=["door-c"])
        access.delete_group("lobby-users")
        door.close()
        matcher.stop()
        matcher.store.close()
