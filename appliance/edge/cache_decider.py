"""Deciding at the door with or without the matcher: the matching modes.

* ``central``: ask the matcher; when it does not answer within ``answer_timeout_ms`` (or
  the broker is down) decide from the device cache. Once a request went unanswered the
  matcher is silent (``MatcherLink.matcher_silent``) and a usable cache decides at once, with
  no wait, until the matcher answers the sync client's next ask.
* ``local``: decide on the device; the matcher receives the decision as an event.
* ``local-first``: decide on the device; when the cache does not accept, ask the matcher
  (it may know a newer enrollment) within the same timeout.

Central matching, and the central fallback of ``local-first``, send the probe template to the
matcher: only while the matcher's last sync answer said the site holds a recorded
justification (``sync.central_allowed``; ``appliance site matching justify``). Until then the
door runs ``local`` whatever its configuration (``effective_mode``): no template leaves it.

A local decision uses the same ``MatchEngine`` as the matcher over the cache's templates,
then the same ``AccessPolicy`` over the door's rules and the person's groups and validity as
the cache holds them (docs/access.md): a match outside the person's groups, schedule or
validity is refused with that reason, offline too; anti-passback counts this door's passes.
It waits (``sync_wait_ms``) for the post-connection catch-up when the device is connected
but the matcher has not yet confirmed the cache is current. Every local decision is queued in
the outbox as an event (exactly once at the matcher).

A cache is not used when it knows nothing (the matcher never confirmed it and it is empty:
its "no" would mean nothing) or is too old (not confirmed current for ``max_cache_age_s``).
Then, in every mode, the matcher is asked; when it does not answer either, the answer is
``Reason.UNAVAILABLE`` - never ``no_match`` - the door says so and asks for the card, and one
``decision_unavailable`` alarm per outage goes into the outbox (it reaches the matcher when
the connection returns). A cache that is usable and lacks the person still says ``no_match``:
that is a true answer. ``status`` (``matcher_reachable``, ``decision_available``) is what the
door reports in its heartbeat.

A local pass's anti-passback entry commits only after its event is in the outbox
(``recorded_pass``): an outbox that refuses the event (E213, a full disk) leaves no entry behind,
so a person the door did not let in is not "inside" at their next pass.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np

from appliance.access.passback import PassbackTracker
from appliance.access.rules import AccessPolicy, DoorRules, Subject, Validity
from appliance.config import OfflineConfig
from appliance.errors import ApplianceError, ErrorCode
from appliance.matching import FailureTracker, Gallery, MatchEngine, Verdict
from appliance.protocol import messages, topics
from appliance.stores.device import DeviceCache
from appliance.vision.templates import Template

log = logging.getLogger(__name__)

# why the cache cannot stand in for the matcher ("" = it can)
NEVER_SYNCED = "never synced"  # never confirmed current and empty: it knows nobody
STALE = "stale"  # not confirmed current for longer than offline.max_cache_age_s
ALARM_KIND = "decision_unavailable"
PASSBACK_ALARM = "passback_violation"  # soft anti-passback let a second entry through
LOCAL = "local"  # the mode in force without the site's justification for central matching


@contextmanager
def recorded_pass(cache: DeviceCache) -> Iterator[None]:
    """One local pass, decided and put on record in the block: the anti-passback entry ``admit``
    writes joins a cache transaction that commits only after the block has committed the pass's
    event to the outbox. An outbox that refuses the event (E213, a full disk) rolls the entry back
    with it: the door does not act on the pass, so the person must not count as inside. An
    entry that cannot be committed after its event was is lost, logged: the pass stands, and its
    event is the record of it."""
    event_committed = False
    try:
        with cache.passing():
            yield
            event_committed = True
    except ApplianceError as error:
        if not event_committed or error.code is not ErrorCode.STORE_UNWRITABLE:
            raise
        log.error("a local pass is on record, its anti-passback entry is not: %s", error)


def effective_mode(configured: str, central_allowed: bool) -> str:
    """``configured`` when the site justified central matching; otherwise ``local`` (fail
    safe: ``central`` and ``local-first`` would both send templates to the matcher)."""
    return configured if central_allowed else LOCAL


@dataclass(frozen=True)
class DoorStatus:
    """What the door can do now, for heartbeats and displays; never personal data."""

    matcher_reachable: bool  # a matcher answered on this broker connection and has not failed since
    decision_available: bool  # the matcher or a usable cache can decide a pass
    cache: str  # "usable", NEVER_SYNCED or STALE

    def as_dict(self) -> dict[str, bool | str]:
        return asdict(self)


class CacheDecider:
    def __init__(self, link, sync, cache: DeviceCache, offline: OfflineConfig, threshold: float, pump=None):
        self.link, self.sync, self.cache, self.pump = link, sync, cache, pump
        self.offline = offline
        self.threshold = threshold
        self.tracker = FailureTracker()
        self.stats: Counter[str] = Counter()
        self.last_source = ""
        self.last_alarm: messages.Alarm | None = None
        self._alarmed_for: tuple[int, float] | None = None  # (connection, cache confirmation) of the last alarm
        self._view: tuple | None = None  # (generation, pack, engine, names)
        self._policy: tuple[int, AccessPolicy] | None = None  # (cache generation, the door's policy)
        self.passback = PassbackTracker(cache)  # this door's own passes, kept in its cache (docs/access.md)

    # -- the Decider protocol -------------------------------------------------------------
    @property
    def mode(self) -> str:
        """The mode in force: the configured one, or ``local`` without a justification."""
        return effective_mode(self.offline.mode, self.sync.central_allowed)

    def request(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision:
        mode = self.mode
        if mode == "central":
            decision = self._central(request, pack)
            if decision is not None:
                return decision
            self.stats["fallback"] += 1
            return self._local(request, pack) or self._unavailable(request)
        decision = self._local(request, pack)
        if decision is None:  # no usable cache: only the matcher can decide, if it may
            if not self.sync.central_allowed:
                self.stats["central_not_justified"] += 1
                return self._unavailable(request)
            return self._central(request, pack) or self._unavailable(request)
        final = (messages.Reason.LOCKED_OUT, *messages.Reason.ACCESS)  # the cache knows the rules: no second ask
        if mode == "local-first" and not decision.accepted and decision.reason not in final:
            central = self._central(request, pack)
            if central is not None:
                return central
        return decision

    def _central(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision | None:
        if not self.link.online:
            return None
        if self.link.matcher_silent and not self.cache_problem():  # known silent: the cache, at once
            self.stats["matcher_silent"] += 1
            return None
        try:
            decision = self.link.request(request, pack, timeout=self.offline.answer_timeout_ms / 1000, attempts=1)
        except ApplianceError as exc:
            log.info("matcher did not answer in %d ms: %s", self.offline.answer_timeout_ms, exc)
            return None
        self.stats["central"] += 1
        self.last_source = "central"
        return decision

    # -- what the door can do -------------------------------------------------------------
    @property
    def matcher_reachable(self) -> bool:
        return self.link.matcher_reachable

    @property
    def decision_available(self) -> bool:
        """A pass can be decided now: by the matcher, or by a usable cache (any mode falls
        back to the other)."""
        return self.matcher_reachable or not self.cache_problem()

    @property
    def status(self) -> DoorStatus:
        """Both answers and the cache's state in one read (the heartbeat's ``as_dict()``)."""
        problem = self.cache_problem()
        reachable = self.matcher_reachable
        return DoorStatus(reachable, reachable or not problem, problem or "usable")

    def cache_problem(self) -> str:
        """Why the cache cannot decide now: NEVER_SYNCED, STALE, or "" when it can."""
        if self.sync.current.is_set():
            return ""
        confirmed_at = self.cache.confirmed_at
        if not confirmed_at and self.cache.count() == 0:
            return NEVER_SYNCED
        max_age = self.offline.max_cache_age_s
        if max_age and time.time() - confirmed_at > max_age:
            return STALE
        return ""

    # -- local decisions ------------------------------------------------------------------
    def _local(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision | None:
        """The cache's decision, or None when the cache cannot decide (``cache_problem``)."""
        if self.link.online and not self.sync.current.is_set() and not self.link.matcher_silent:
            self.sync.wait_current(self.offline.sync_wait_ms / 1000)  # a silent matcher confirms nothing
        problem = self.cache_problem()
        if problem:
            self.stats["stale_refused" if problem == STALE else "never_synced_refused"] += 1
            log.info("device cache not used: %s (last confirmed at %.0f)", problem, self.cache.confirmed_at)
            return None
        current = self.sync.current.is_set()
        engine, names = self._engine(pack, len(request.vector()))
        matched = engine.decide(request.device_id, Template(request.vector(), *pack), request.claim, time.time())
        with recorded_pass(self.cache):
            verdict = self.admit(request.device_id, matched, request.request_id)
            decision = messages.Decision(request.request_id, verdict.accepted, verdict.reason,
                                         names.get(verdict.subject_id, "") if verdict.accepted else "",
                                         round(verdict.retry_after_s, 1),
                                         verdict.subject_id if verdict.accepted else "")
            if self.pump is not None:  # the matcher learns of every local decision, exactly once
                details = {"accepted": verdict.accepted, "reason": verdict.reason, "subject": verdict.subject_id,
                           "mode": self.mode, "revision": self.cache.revision, "current": current,
                           "request_id": request.request_id}
                self.pump.submit(topics.EVENT, messages.Event(messages.new_id(), request.device_id,
                                                              "local_decision", time.time(), details))
        self.stats["local"] += 1
        self.last_source = "local"
        return decision

    def admit(self, door: str, verdict: Verdict, pass_id: str = "") -> Verdict:
        """A local match stands only if the door's rules, as cached, grant the person now
        (``pass_id``: the request's id, ``access.passback``)."""
        if not verdict.accepted:
            return verdict
        with self.cache.lock:  # the views' lock is the cache's: a pass holds it across admit and its event
            generation = self.cache.generation
            if self._policy is None or self._policy[0] != generation:
                rules = DoorRules.from_wire(door, self.cache.rules())
                self._policy = (generation, AccessPolicy({door: rules}, self.passback))
            policy = self._policy[1]
        held = self.cache.subject_access(verdict.subject_id)
        subject = Subject(verdict.subject_id, frozenset(held.get("g", ())), Validity.from_wire(held))
        access = policy.decide(subject, door, datetime.now(timezone.utc), pass_id)
        if access.passback_violation and self.pump is not None:  # soft anti-passback: on record
            self.pump.submit(topics.ALARM, messages.Alarm(messages.new_id(), door, PASSBACK_ALARM, time.time(),
                                                          {"subject": verdict.subject_id, "mode": "soft"}))
        if access.granted:
            return verdict
        self.stats[f"access_{access.reason}"] += 1
        return Verdict(False, access.reason, verdict.subject_id)

    # -- neither ----------------------------------------------------------------------------
    def _unavailable(self, request: messages.MatchRequest) -> messages.Decision:
        """No matcher answer and no usable cache: refuse, saying why (the card still works)."""
        self.stats["unavailable"] += 1
        self.last_source = "none"
        self._alarm_once(request.device_id)
        return messages.Decision(request.request_id, False, messages.Reason.UNAVAILABLE)

    def _alarm_once(self, device_id: str) -> None:
        """One alarm per outage, committed to the outbox now and delivered when the broker
        connection (and a matcher) is back. A new outage is a new broker connection or a
        new cache confirmation since the last alarm."""
        outage = (self.link.connections, self.cache.confirmed_at)
        if self.pump is None or outage == self._alarmed_for:
            return
        details = {"reason": messages.Reason.UNAVAILABLE, "cache": self.cache_problem() or "usable",
                   "mode": self.mode, "broker_connected": self.link.online,
                   "cache_revision": self.cache.revision, "cache_confirmed_at": self.cache.confirmed_at}
        alarm = messages.Alarm(messages.new_id(), device_id, ALARM_KIND, time.time(), details)
        self.pump.submit(topics.ALARM, alarm)
        self._alarmed_for, self.last_alarm = outage, alarm
        self.stats["alarms"] += 1
        log.warning("%s: no decision possible (matcher unreachable, cache %s); alarm queued",
                    device_id, details["cache"])

    def _engine(self, pack: tuple[str, str], dimension: int) -> tuple[MatchEngine, dict[str, str]]:
        with self.cache.lock:
            generation = self.cache.generation
            if self._view is None or self._view[0] != generation or self._view[1] != pack:
                ids, vectors, claims, names = self.cache.local_view(*pack)
                gallery = Gallery(pack[0], pack[1], dimension)
                if ids:
                    gallery.load(ids, np.asarray(vectors, np.float32))
                engine = MatchEngine(gallery, self.threshold, lambda claim: claims.get(self.cache.claim_of(claim)),
                                     self.tracker)
                self._view = (generation, pack, engine, names)
            return self._view[2], self._view[3]
