"""The replica's gate on a clock the test turns: budgets, muting, one alarm and one coalesced
record per device and window, written only by ``flush`` (into the real audit log)."""
from __future__ import annotations

from collections import Counter

from appliance.matcher.device_limits import Budget, Limits
from appliance.matcher.gate import Gate, any_mode
from appliance.matcher.replica_io import Auditor
from appliance.protocol import topics

READS = (topics.REQUEST, topics.EVENT, topics.ALARM, topics.SYNC_ACK)
LIMITS = Limits(requests=Budget(2.0, 4), rejects_per_window=10, window_s=10.0)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate_on(node, limits: Limits = LIMITS) -> tuple[Gate, Clock, Counter]:
    clock, stats = Clock(), Counter()
    return Gate("matcher-1", limits, Auditor("matcher-1", node.data.audit), stats, clock=clock), clock, stats


def req(device: str) -> str:
    return topics.device_topic(device, topics.REQUEST)


def entries(node) -> list[tuple[str, str, str]]:
    return [(e.device, e.action, e.detail) for e in node.data.audit.entries()]


def test_a_burst_then_the_sustained_rate_each_device_on_its_own_budget(node):
    gate, clock, stats = gate_on(node)
    assert [gate.at_router(req("door-a"), READS) for _ in range(6)] == [True] * 4 + [False] * 2
    assert gate.at_router(req("door-b"), READS)  # another device's budget is untouched
    clock.now += 1.0  # two tokens back
    assert [gate.at_router(req("door-a"), READS) for _ in range(3)] == [True, True, False]
    assert stats["rejected:over_budget"] == 3
    # events and sync have budgets of their own, sized for outbox drains and snapshots
    assert all(gate.at_router(topics.device_topic("door-a", topics.EVENT), READS) for _ in range(200))


def test_bulk_messages_over_budget_are_throttled_never_held_against_the_device(node):
    """An outbox draining after an outage goes faster than the events budget: the excess is
    dropped (the outbox sends it again), the device is neither muted nor alarmed nor audited."""
    gate, clock, stats = gate_on(node)
    event = topics.device_topic("door-a", topics.EVENT)
    taken = sum(gate.at_router(event, READS) for _ in range(3 * LIMITS.events.burst))
    assert taken == LIMITS.events.burst and stats["throttled:event"] == 2 * LIMITS.events.burst
    assert not any(key.startswith(("rejected:", "alarm:")) for key in stats) and gate.flush(closing=True) == 0
    clock.now += 1.0
    assert gate.at_router(event, READS) and gate.at_router(req("door-a"), READS)  # not muted
    assert entries(node) == []


def test_a_bundle_is_charged_per_envelope_it_carries(node):
    """An outbox's bundle (``protocol.bundles``) takes one token per envelope: bundling never
    widens the events budget."""
    gate, clock, stats = gate_on(node)
    event = topics.device_topic("door-a", topics.EVENT)
    assert gate.at_router(event, READS, cost=LIMITS.events.burst - 10)
    assert not gate.at_router(event, READS, cost=11)  # 10 tokens left: the whole bundle waits
    assert gate.at_router(event, READS, cost=10) and not gate.at_router(event, READS)
    assert stats["throttled:event"] == 2 and not any(key.startswith("rejected:") for key in stats)


def test_a_flood_mutes_the_device_raises_one_alarm_and_gets_one_record_per_window(node):
    gate, clock, stats = gate_on(node)
    for _ in range(4):
        assert gate.at_router(req("door-b"), READS)
    for _ in range(2_000):
        gate.at_router(req("door-b"), READS)
    gate.refuse("door-b", topics.REQUEST, "bad_signature")
    assert entries(node) == []  # nothing written off the ticker
    clock.now += 5.0  # tokens are back, but the device stays muted for its window
    assert not gate.at_router(req("door-b"), READS)
    assert stats["alarm:message_flood"] == 1
    assert gate.flush() == 1  # the alarm now; the window is still open
    assert entries(node) == [("door-b", "alarm.message_flood",
                              "10 messages rejected within 10 s: muted, the rest of the window is dropped unopened")]
    clock.now += 5.0
    assert gate.at_router(req("door-b"), READS)  # the window ended: heard again, within its budget
    assert gate.flush() == 1
    (device, action, detail) = entries(node)[-1]
    assert (device, action) == ("door-b", "message.rejected")
    assert detail == "2,002 messages rejected (muted: 1,991, over budget: 10, bad signature: 1) in 10 s on req"
    assert gate.flush(closing=True) == 0 and stats["alarm:message_flood"] == 1


def test_whoever_watches_the_mutes_is_told_when_one_starts_and_ends_and_reads_the_state_then(node):
    gate, clock, _ = gate_on(node)
    told: list[tuple[str, bool]] = []
    gate.watch_mutes(lambda device: told.append((device, gate.muted(device))))
    for _ in range(20):
        gate.at_router(req("door-b"), READS)  # 4 within the burst, then refusals: muted at the 10th
    gate.refuse("door-c", topics.EVENT, "malformed")  # a refusal that mutes nobody tells nobody
    assert told == [("door-b", True)] and gate.muted("door-b") and not gate.muted("door-c")
    clock.now += 10.0  # the window is over: no longer muted, even before the ticker says so
    assert not gate.muted("door-b")
    gate.flush()
    assert told == [("door-b", True), ("door-b", False)]
    for _ in range(10):  # muted again in a new window, which a refusal ends as well as the ticker
        gate.refuse("door-b", topics.REQUEST, "malformed")
    clock.now += 20.0  # at once after the last mute: twice as long
    gate.refuse("door-b", topics.REQUEST, "malformed")
    assert told[2:] == [("door-b", True), ("door-b", False)]


def test_a_device_that_floods_again_at_once_is_muted_twice_as_long_each_time_up_to_the_cap(node):
    """A broken or hostile door that keeps flooding stays muted (shed at the broker) instead of
    raising an alarm and being heard again every window; one that behaves for a window after its
    mute ends starts over at one window."""
    gate, clock, stats = gate_on(node, Limits(requests=Budget(2.0, 4), rejects_per_window=10, window_s=10.0,
                                              mute_max_s=35.0))
    lengths = []
    for _ in range(4):
        muted_at = clock.now
        for _ in range(20):
            gate.refuse("door-b", topics.REQUEST, "malformed")
        assert gate.muted("door-b") and gate.muted_now() == {"door-b": len(lengths) + 1}
        while gate.muted("door-b"):
            clock.now += 1.0
        lengths.append(clock.now - muted_at)
        gate.flush()
    assert lengths == [10.0, 20.0, 35.0, 35.0] and stats["alarm:message_flood"] == 4 and gate.muted_now() == {}
    alarms = [detail for _, action, detail in entries(node) if action == "alarm.message_flood"]
    assert alarms[0] == "10 messages rejected within 10 s: muted, the rest of the window is dropped unopened"
    again = "10 messages rejected within 10 s, muted {} windows in a row: muted for {} s, dropped unopened"
    assert alarms[1:3] == [again.format(2, 20), again.format(3, 35)]
    records = [detail for _, action, detail in entries(node) if action == "message.rejected"]
    assert records[1] == "20 messages rejected (malformed: 20) in 20 s on req"
    clock.now += 10.0  # a window of quiet after the last mute: forgiven
    for _ in range(10):
        gate.refuse("door-b", topics.REQUEST, "malformed")
    clock.now += 10.0
    assert not gate.muted("door-b")


def test_a_new_refusal_after_the_window_starts_the_next_one_and_the_old_record_is_still_written(node):
    gate, clock, _ = gate_on(node)
    gate.refuse("door-a", topics.EVENT, "malformed")
    clock.now += 30.0
    gate.refuse("door-a", topics.SYNC_ACK, "not_allowed")
    assert gate.flush(closing=True) == 2
    assert [detail for _, _, detail in entries(node)] == [
        "1 message rejected (malformed: 1) in 10 s on event",
        "1 message rejected (not allowed: 1) in 0.0 s on sync-ack"]


def test_what_no_device_may_send_is_refused_before_any_budget(node):
    gate, _, stats = gate_on(node)
    gate.devices = frozenset({"door-a"})
    assert not gate.at_router(topics.device_topic("door-a", topics.DECISION), READS)  # devices only read it
    assert not gate.at_router(topics.device_topic("door-a", topics.TELEMETRY), READS)  # nobody here reads it
    assert not gate.at_router(req("door-z"), READS)  # not a device this replica knows
    assert not gate.at_router(topics.ENROLLMENT_EVENTS, READS)  # not a device topic at all
    assert stats["rejected:topic"] == 4 and gate.at_router(req("door-a"), READS)


def test_the_routers_answer_per_topic_is_remembered_and_follows_the_known_devices(node):
    gate, _, stats = gate_on(node)
    assert gate.at_router(req("door-a"), READS) and gate.at_router(req("door-a"), READS)  # remembered
    gate.devices = frozenset({"door-b"})  # door-a is no longer one this replica knows
    assert not gate.at_router(req("door-a"), READS) and stats["rejected:topic"] == 1
    gate.devices = None
    assert gate.at_router(req("door-a"), READS)


def test_the_sender_check_fails_closed(node):
    def unreadable(device: str, topic: str) -> bool:
        raise OSError("policy file unreadable")

    gate = Gate("matcher-1", LIMITS, Auditor("matcher-1"), Counter(), unreadable)
    assert not gate.allowed("door-a", req("door-a"))
    modes = any_mode(lambda device, mode: (device, mode) == ("door-a", "verify"))  # a 1:1-only door is provisioned
    assert modes("door-a", topics.device_topic("door-a", topics.EVENT)) and not modes("door-b", req("door-b"))
