"""Deciding at the door with or without the matcher: the matching modes.

* ``central``: ask the matcher; when it does not answer within ``answer_timeout_ms`` (or
  the broker is down) decide from the device cache.
* ``local``: decide on the device; the matcher receives the decision as an event.
* ``local-first``: decide on the device; when the cache does not accept, ask the matcher
  (it may know a newer enrollment) within the same timeout.

A local decision uses the same ``MatchEngine`` as the matcher over the cache's templates.
It waits (``sync_wait_ms``) for the post-connection catch-up when the device is connected
but the matcher has not yet confirmed the cache is current, and refuses to decide from a
cache not confirmed current for longer than ``max_cache_age_s`` (the door falls back to the
card). Every local decision is queued in the outbox as an event (exactly once at the matcher).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import numpy as np

from appliance.config import OfflineConfig
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.decisions import FailureTracker, MatchEngine
from appliance.matcher.gallery import Gallery
from appliance.protocol import messages, topics
from appliance.stores.device import DeviceCache, claim_hash
from appliance.vision.templates import Template

log = logging.getLogger(__name__)


class CacheDecider:
    def __init__(self, link, sync, cache: DeviceCache, offline: OfflineConfig, threshold: float, pump=None):
        self.link, self.sync, self.cache, self.pump = link, sync, cache, pump
        self.offline = offline
        self.threshold = threshold
        self.tracker = FailureTracker()
        self.stats: Counter[str] = Counter()
        self.last_source = ""
        self._view: tuple | None = None  # (generation, pack, engine, names)
        self._lock = threading.Lock()

    # -- the Decider protocol -------------------------------------------------------------
    def request(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision:
        mode = self.offline.mode
        if mode == "central":
            decision = self._central(request, pack)
            if decision is not None:
                return decision
            self.stats["fallback"] += 1
            return self._local(request, pack)
        decision = self._local(request, pack)
        if mode == "local-first" and not decision.accepted and decision.reason != messages.Reason.LOCKED_OUT:
            central = self._central(request, pack)
            if central is not None:
                return central
        return decision

    def _central(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision | None:
        if not self.link.online:
            return None
        try:
            decision = self.link.request(request, pack, timeout=self.offline.answer_timeout_ms / 1000, attempts=1)
        except ApplianceError as exc:
            log.info("matcher did not answer in %d ms: %s", self.offline.answer_timeout_ms, exc)
            return None
        self.stats["central"] += 1
        self.last_source = "central"
        return decision

    # -- local decisions ------------------------------------------------------------------
    def _local(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision:
        if self.link.online and not self.sync.current.is_set():
            self.sync.wait_current(self.offline.sync_wait_ms / 1000)
        current = self.sync.current.is_set()
        age = time.time() - self.cache.confirmed_at
        if not current and self.offline.max_cache_age_s and age > self.offline.max_cache_age_s:
            self.stats["stale_refused"] += 1
            raise ApplianceError(ErrorCode.CACHE_STALE, f"cache last confirmed {age:.0f} s ago")
        engine, names = self._engine(pack, len(request.vector()))
        verdict = engine.decide(request.device_id, Template(request.vector(), *pack), request.claim, time.time())
        decision = messages.Decision(request.request_id, verdict.accepted, verdict.reason,
                                     names.get(verdict.subject_id, "") if verdict.accepted else "",
                                     round(verdict.retry_after_s, 1))
        self.stats["local"] += 1
        self.last_source = "local"
        if self.pump is not None:  # the matcher learns of every local decision, exactly once
            details = {"accepted": verdict.accepted, "reason": verdict.reason, "subject": verdict.subject_id,
                       "mode": self.offline.mode, "revision": self.cache.revision, "current": current,
                       "request_id": request.request_id}
            self.pump.submit(topics.EVENT, messages.Event(messages.new_id(), request.device_id, "local_decision",
                                                          time.time(), details))
        return decision

    def _engine(self, pack: tuple[str, str], dimension: int) -> tuple[MatchEngine, dict[str, str]]:
        with self._lock:
            generation = self.cache.generation
            if self._view is None or self._view[0] != generation or self._view[1] != pack:
                ids, vectors, claims, names = self.cache.local_view(*pack)
                gallery = Gallery(pack[0], pack[1], dimension)
                if ids:
                    gallery.load(ids, np.asarray(vectors, np.float32))
                engine = MatchEngine(gallery, self.threshold, lambda claim: claims.get(claim_hash(claim)),
                                     self.tracker)
                self._view = (generation, pack, engine, names)
            return self._view[2], self._view[3]
