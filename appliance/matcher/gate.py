"""The way into one matcher replica, shared by all its handlers: per-device budgets, the
sender check, opening on the topic, and refusals coalesced per device and window.

Why (issue 12, finding 3): every refused message used to write its own synchronously
flushed audit row on the worker the other doors wait on, so 3,000 junk messages from one
device made 3,001 rows and the other doors waited 8.9 s. A message now meets, in order:

1. **The router** (the MQTT network thread, before anything is queued or opened): the topic
   must be one its owner may publish on (``protocol.topics.may_publish``, the rules the
   broker ACL is made from) and a handler reads, the owner a device this replica knows; the
   device must not be muted; its budget for that kind of message (a token bucket of
   ``matcher.device_limits``: ``rate_per_s`` sustained, ``burst`` at once) must have a token. A
   refusal here costs a few look-ups, so a flood is dropped as fast as it arrives and its excess never reaches
   the queues of the workers other doors wait on. Over budget, a request is refused; an
   event, alarm or sync message is only throttled (its sender repeats it until it is
   acknowledged: an outbox draining after an outage is flow-controlled, not punished).
2. **The worker, before the envelope is opened**: the sender may send this, whatever the
   message type - ``may_send(device, topic)``, on a site ``ops.provisioning.may_send``: an
   enrolled, not revoked identity whose rules let it publish there (given only a matching
   mode check, the device must be allowed some mode).
3. **The envelope** opens (``protocol.inbound.open_on_topic``: signed by the topic's owner)
   and the message decodes (the handler).

Charging the topic's owner before opening is sound: the broker lets only device X publish on
X's topics, and step 3 refuses any other signer, so one device never spends another's budget.

Each refusal is counted (``rejected:<reason>`` in the replica's stats) and noted in the
device's reject window, never audited one by one. A window opens at a device's first refusal
and lasts ``window_s``; when it ends, one ``message.rejected`` record says how many and why
("2,997 messages rejected (over budget: 2,900, ...) in 10 s"). A device refused
``rejects_per_window`` times within one window is muted for the rest of it (all it sends is
dropped at the router, unopened) and raises one ``alarm.message_flood``. Muted again within a
window of its mute ending, it is muted twice as long as the last time (a longer window), up to
``Limits.mute_max_s``: a device that keeps flooding - broken or hostile - stays muted instead of
raising an alarm and costing a subscribe, an unsubscribe and a hundred refusals every window, as
fail2ban's increasing ban time and OpenSSH's penalties escalate. The flush ticker
writes records and alarms, so no audit write ever runs on the network thread. Whoever watches
the mutes (``watch_mutes``: the service, which then stops subscribing to the device's topics
until the mute ends) is told of each change.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Container
from dataclasses import dataclass, field

from appliance.matcher.device_limits import Limits, TokenBucket
from appliance.matcher.replica_io import Audit
from appliance.protocol import topics
from appliance.protocol.inbound import Inbound, open_on_topic
from appliance.security.envelope import EnvelopeRejected, MessageType, Opener
from appliance.transport.mqtt import Incoming

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 1.0  # the ticker writes alarms and ended windows this often
MAX_TRACKED = 10_000  # devices with state; beyond it idle ones are forgotten (full buckets again)
MAX_TOPICS = len(topics.DEVICE_WRITES) * MAX_TRACKED  # topics whose routing is remembered
MATCHING_MODES = ("verify", "identify")  # messages.MatchRequest.mode: provisioned = allowed one of them
DEVICE_ROLE = "device"  # whose rules (protocol.topics.RIGHTS) a device topic's owner publishes under

OVER_BUDGET, MUTED, TOPIC, NOT_ALLOWED, MALFORMED = "over_budget", "muted", "topic", "not_allowed", "malformed"
# A door asks once per pass: a request over budget is a refusal (it counts towards a flood).
# Events, alarms and sync are bulk transfers their senders repeat until acknowledged: over
# budget they are only held back (``throttled:<kind>``), never held against the device.
INTERACTIVE = frozenset({topics.REQUEST})
FLOOD_ALARM, REJECTED_RECORD = "alarm.message_flood", "message.rejected"


@dataclass
class _Window:
    """One device's refusals since its first one, for ``length`` seconds (``Limits.window_s``, or
    ``Limits.mute_s`` of its mutes in a row once muted)."""

    started: float
    length: float  # ``Limits.window_s``; longer once a device muted again in a row is muted
    reasons: Counter[str] = field(default_factory=Counter)
    kinds: set[str] = field(default_factory=set)
    muted: bool = False
    strikes: int = 0  # mutes in a row this one makes (1: the first)
    alarm_due: bool = False  # muted in this window; the next flush writes the alarm

    @property
    def ends(self) -> float:
        return self.started + self.length

    def over(self, now: float) -> bool:
        return now >= self.ends

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


@dataclass
class _Device:
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    window: _Window | None = None
    last_mute: _Window | None = None  # its last muted window, over: the next mute may be in a row


def any_mode(device_allowed: Callable[[str, str], bool] | None) -> Callable[[str, str], bool] | None:
    """A sender check from a matching-mode check (``device_allowed(device, mode)``): provisioned
    and not revoked = allowed some mode, whatever the topic."""
    if device_allowed is None:
        return None
    return lambda device, topic: any(device_allowed(device, mode) for mode in MATCHING_MODES)


class Gate:
    def __init__(self, name: str, limits: Limits, audit: Audit, stats: Counter[str],
                 may_send: Callable[[str, str], bool] | None = None, devices: Container[str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.name, self.limits, self.audit, self.stats = name, limits, audit, stats
        self.may_send = may_send or (lambda device, topic: True)
        self._devices = devices  # the devices this replica knows (its openers'); None: any
        self.clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, _Device] = {}
        self._ended: list[tuple[str, _Window, float]] = []  # windows closed by a newer refusal
        self._topics: dict[str, tuple[str | None, str, bool]] = {}  # the router's answers per topic (``_topic``)
        self._mute_listeners: list[Callable[[str], None]] = []
        self._mutes_changed: list[str] = []  # devices muted or unmuted since the listeners were last told

    @property
    def devices(self) -> Container[str] | None:
        """The devices this replica knows (its openers'); None: any."""
        return self._devices

    @devices.setter
    def devices(self, devices: Container[str] | None) -> None:
        self._devices, self._topics = devices, {}  # the router's answers depended on the old ones

    def watch_mutes(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(device)`` (outside the gate's lock) after ``device`` is muted and after
        its mute ends; it reads ``muted`` then (a later change calls it again)."""
        self._mute_listeners.append(listener)

    def muted(self, device: str) -> bool:
        """Is ``device`` muted now (the rest of its window is dropped unopened)?"""
        with self._lock:
            state = self._state.get(device)
            return state is not None and self._silenced(state.window, self.clock())

    def muted_now(self) -> dict[str, int]:
        """Every device muted now, with its mutes in a row (what ``appliance health`` warns of)."""
        now = self.clock()
        with self._lock:
            return {device: state.window.strikes for device, state in self._state.items()
                    if state.window is not None and self._silenced(state.window, now)}

    def _silenced(self, window: _Window | None, now: float) -> bool:
        """A window muted and not yet over: what the router drops and ``muted`` reports."""
        return window is not None and window.muted and not window.over(now)

    def _tell_mutes(self) -> None:
        if not self._mutes_changed:  # read without the lock: a change is told by whoever made it
            return
        with self._lock:
            changed, self._mutes_changed = list(dict.fromkeys(self._mutes_changed)), []
        for device in changed:
            for listener in self._mute_listeners:
                listener(device)

    # -- the router (network thread) --------------------------------------------------------
    def at_router(self, topic: str, readers: Container[str], cost: int = 1) -> bool:
        """May what arrived on ``topic`` be queued for its handler (``readers``: the kinds
        the handlers read)? ``cost``: the envelopes it carries (``protocol.bundles.count``),
        charged to the budget together. Refusals are counted and noted; nothing is opened here."""
        known = self._topics.get(topic)
        if known is None:
            known = self._topic(topic)
        device, kind, publishable = known
        if device is None:  # not a device topic: nobody to charge it to
            with self._lock:
                self.stats[f"rejected:{TOPIC}"] += 1
            return False
        if kind not in readers or not publishable:
            self.refuse(device, kind, TOPIC)
            return False
        budget = self.limits.budget(kind)
        now = self.clock()
        with self._lock:
            state = self._device(device)
            if self._silenced(state.window, now):
                reason = MUTED
            elif budget is None:
                return True
            else:
                bucket = state.buckets.get(kind)
                if bucket is None:
                    bucket = state.buckets[kind] = TokenBucket(budget, now)
                if bucket.take(budget, now, cost):
                    return True
                if kind not in INTERACTIVE:  # flow control: the outbox or sync client sends it again
                    self.stats[f"throttled:{kind}"] += 1
                    return False
                reason = OVER_BUDGET
            self._note(device, state, kind, reason, now)
        self._tell_mutes()
        return False

    def _topic(self, topic: str) -> tuple[str | None, str, bool]:
        """What the router needs of ``topic`` (its device, its kind, whether that device - one
        this replica knows - may publish there), worked out once per topic: it depends on the
        topic alone, and ``topics.may_publish`` cost ~7 us of every message (issue 17)."""
        device, kind = topics.device_of(topic), topic.rsplit("/", 1)[-1]
        publishable = device is not None and (self.devices is None or device in self.devices) and \
            topics.may_publish(DEVICE_ROLE, device, topic)
        if len(self._topics) >= MAX_TOPICS:  # only the broker's own subscribers' topics arrive; a bound anyway
            self._topics.clear()
        self._topics[topic] = (device, kind, publishable)
        return device, kind, publishable

    # -- the workers ------------------------------------------------------------------------
    def admit(self, opener: Opener, incoming: Incoming, expect: MessageType | None = None) -> Inbound | None:
        """The opened message, or None after noting why: the device is not provisioned (or
        revoked), or the envelope does not open on this topic."""
        device, kind = topics.device_of(incoming.topic), incoming.topic.rsplit("/", 1)[-1]
        if device is not None and not self.allowed(device, incoming.topic):
            self.refuse(device, kind, NOT_ALLOWED)
            return None
        try:
            return open_on_topic(opener, incoming.topic, incoming.payload, expect)
        except EnvelopeRejected as exc:
            log.debug("%s: refused on %s: %s", self.name, incoming.topic, exc)
            if device is None:
                with self._lock:
                    self.stats[f"rejected:{exc.reason.name.lower()}"] += 1
            else:
                self.refuse(device, kind, exc.reason.name.lower())
            return None

    def allowed(self, device: str, topic: str) -> bool:
        """May ``device`` send what arrived on ``topic`` (enrolled, not revoked)? Fails closed."""
        try:
            return bool(self.may_send(device, topic))
        except Exception:  # a registry or policy that cannot be read allows nothing
            log.exception("%s: policy of %s unreadable", self.name, device)
            return False

    def refuse(self, device: str, kind: str, reason: str) -> None:
        """One refused message of ``device``: counted, noted in its window (no audit row now)."""
        with self._lock:
            self._note(device, self._device(device), kind, reason, self.clock())
        self._tell_mutes()

    # -- the flush ticker -------------------------------------------------------------------
    def flush(self, closing: bool = False) -> int:
        """Write the alarms due and one record per ended window (every open one when
        ``closing``); returns the entries written."""
        now = self.clock()
        with self._lock:
            ended, self._ended = self._ended, []
            current = [(device, state.window) for device, state in self._state.items() if state.window is not None]
            alarms = [(device, window) for device, window in [(d, w) for d, w, _ in ended] + current
                      if window.alarm_due]
            for device, window in current:
                if closing or window.over(now):
                    ended.append((device, window, now))
                    self._end(device, self._state[device], window)
            for _, window in alarms:
                window.alarm_due = False
        self._tell_mutes()
        for device, window in alarms:
            self._write(device, FLOOD_ALARM, "raised", self._alarm_detail(window))
        for device, window, at in ended:
            span = min(at - window.started, window.length)
            reasons = ", ".join(f"{reason.replace('_', ' ')}: {count:,}" for reason, count in
                                sorted(window.reasons.items(), key=lambda item: (-item[1], item[0])))
            self._write(device, REJECTED_RECORD, "rejected",
                        f"{window.total:,} message{'s' if window.total != 1 else ''} rejected ({reasons}) in "
                        f"{_seconds(span)} on "
                        f"{', '.join(sorted(window.kinds))}")
        return len(alarms) + len(ended)

    # -- inside ---------------------------------------------------------------------------
    def _device(self, device: str) -> _Device:
        state = self._state.get(device)
        if state is None:
            if len(self._state) >= MAX_TRACKED:
                self._state = {d: s for d, s in self._state.items() if s.window is not None}
            state = self._state[device] = _Device()
        return state

    def _end(self, device: str, state: _Device, window: _Window) -> None:
        """``window`` is over (under the lock): a muted one is remembered for the next mute."""
        state.window = None
        if window.muted:  # told now, whether the ticker or a later refusal ended it
            state.last_mute = window
            self._mutes_changed.append(device)

    def _note(self, device: str, state: _Device, kind: str, reason: str, now: float) -> None:
        self.stats[f"rejected:{reason}"] += 1
        window = state.window
        if window is None or window.over(now):
            if window is not None:
                self._ended.append((device, window, now))
                self._end(device, state, window)
            window = state.window = _Window(now, self.limits.window_s)
        window.reasons[reason] += 1
        window.kinds.add(kind)
        if not window.muted and window.total >= self.limits.rejects_per_window:
            last = state.last_mute
            window.strikes = last.strikes + 1 if last is not None and now - last.ends < self.limits.window_s else 1
            window.length = self.limits.mute_s(window.strikes)
            window.muted = window.alarm_due = True
            self._mutes_changed.append(device)
            self.stats[f"alarm:{FLOOD_ALARM.split('.', 1)[1]}"] += 1
            log.warning("%s: %s sent %d refused messages within %s: muted for %s (%d in a row)", self.name, device,
                        window.total, _seconds(now - window.started), _seconds(window.length - (now - window.started)),
                        window.strikes)

    def _alarm_detail(self, window: _Window) -> str:
        head = f"{self.limits.rejects_per_window:,} messages rejected within {_seconds(self.limits.window_s)}"
        if window.strikes <= 1:
            return f"{head}: muted, the rest of the window is dropped unopened"
        return (f"{head}, muted {window.strikes} windows in a row: muted for {_seconds(window.length)},"
                f" dropped unopened")

    def _write(self, device: str, action: str, result: str, detail: str) -> None:
        try:
            self.audit(device, action, "-", result, detail)
        except Exception:  # the counts stay in the stats; the next entry may succeed
            self.stats["audit_failed"] += 1
            log.exception("%s: audit entry %s for %s not written", self.name, action, device)


def _seconds(span: float) -> str:
    return f"{span:.0f} s" if span >= 10 else f"{span:.1f} s"
