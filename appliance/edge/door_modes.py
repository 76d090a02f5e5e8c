"""Door modes: how a person may pass this door now, and the card/PIN pass itself.

A door runs one ``DoorMode`` at a time: ``face``, ``card+face`` (the card names the person,
the face pass is 1:1 against them: ``claim`` of the face pass), ``card|pin`` (the non-face
alternative only: no camera pass, no face prompt) or ``face|card``. ``DoorModeSchedule`` gives
the mode at a moment: the default, or the first configured window (a weekly schedule in the
site's time zone, ``appliance.access.schedule``) that covers it.

``CredentialDecider`` decides a card or PIN pass: the matcher first (a sealed
``CredentialRequest`` on the door's ``credential`` topic, answered with the same ``Decision``
as a face pass: accepted, reason, masked name, never a score), else the device cache (a card
whose keyed claim the cache holds, with the holder's PIN verifier and face refusal: the same
rule, attempt limits per card and keypad, and access check as the matcher's).
Every local decision goes to the outbox as an event, like a face pass decided by the cache.
A person who refused face recognition is always offered the alternative: their card + PIN
opens every door they may pass (``matching.credentials.allowed_for``). Rules and PIN hashing
are shared with the matcher in ``appliance.matching.credentials``.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from appliance.access.schedule import Holidays, Schedule, WeeklySchedule
from appliance.config.mode_tables import DoorMode, DoorModeConfig
from appliance.edge.cache_decider import recorded_pass
from appliance.errors import ApplianceError
from appliance.matching import Verdict
from appliance.matching.credentials import (
    CARD, PIN, Credential, CredentialJudge, Holder, accepts_credential, allowed_for, needs_face, offers_face,
)
from appliance.protocol import messages, topics
from appliance.protocol.credential_messages import CredentialRequest
from appliance.stores import audit_devices
from appliance.stores.device import DeviceCache

log = logging.getLogger(__name__)

__all__ = ["CARD", "PIN", "Credential", "CredentialDecider", "DoorMode", "DoorModeSchedule", "accepts_credential",
           "allowed_for", "needs_face", "offers_face"]

EVENT_KIND = audit_devices.CREDENTIAL_DECISION  # entered in the centre's audit chain as the door's decision
NO_PACK = ("", "")  # a credential request carries no template: no model pack


@dataclass(frozen=True)
class DoorModeSchedule:
    """The default mode and the scheduled ones: ``mode_at`` picks the first window covering
    the moment, else the default."""

    default: DoorMode = DoorMode.FACE
    windows: tuple[tuple[DoorMode, Schedule], ...] = ()

    @classmethod
    def from_config(cls, config: DoorModeConfig) -> DoorModeSchedule:
        holidays = Holidays.parse(config.holidays)
        windows = tuple((DoorMode(w.mode), Schedule(WeeklySchedule.from_mapping(w.schedule), config.time_zone,
                                                    holidays)) for w in config.windows)
        return cls(DoorMode(config.mode), windows)

    def mode_at(self, at: datetime) -> DoorMode:
        """The mode in force at ``at`` (an aware datetime, any zone)."""
        for mode, schedule in self.windows:
            if schedule.allows(at):
                return mode
        return self.default


class CredentialDecider:
    """Decides card and PIN passes for one door: the matcher when it answers within
    ``answer_timeout_s``, else the device cache (at once while the link holds the matcher
    silent and the cache was synced: ``MatcherLink.matcher_silent``). ``link`` is the door's
    ``MatcherLink`` (None: no matcher, e.g. a stand-alone door), ``pump`` its outbox pump (events), ``admit``
    the door's access check of a local match (the face passes' own, so that groups, schedules
    and anti-passback count card passes too; None: the cache's eligibility only)."""

    def __init__(self, link, cache: DeviceCache, schedule: DoorModeSchedule, *, pin_attempts: int,
                 pin_lockout_s: float, answer_timeout_s: float, pump=None,
                 admit: Callable[[str, Verdict, str], Verdict] | None = None, clock: Callable[[], float] = time.time):
        self.link, self.cache, self.schedule, self.pump = link, cache, schedule, pump
        self.admit = admit or (lambda door, verdict, pass_id="": verdict)
        self.judge = CredentialJudge(pin_attempts, pin_lockout_s)
        self.answer_timeout_s = answer_timeout_s
        self.clock = clock
        self.stats: Counter[str] = Counter()
        self.last_source = ""

    @classmethod
    def from_config(cls, link, cache: DeviceCache, config, pump=None,
                    admit: Callable[[str, Verdict], Verdict] | None = None) -> CredentialDecider:
        """From the whole ``Config``: ``[door_mode]`` and ``offline.answer_timeout_ms``."""
        modes = config.door_mode
        return cls(link, cache, DoorModeSchedule.from_config(modes), pin_attempts=modes.pin_attempts,
                   pin_lockout_s=modes.pin_lockout_s, answer_timeout_s=config.offline.answer_timeout_ms / 1000,
                   pump=pump, admit=admit)

    def mode_now(self) -> DoorMode:
        return self.schedule.mode_at(datetime.fromtimestamp(self.clock()).astimezone())

    def decide(self, credential: Credential, door: str) -> messages.Decision:
        """The decision on ``credential`` read at ``door`` (this device's id) in the mode now."""
        mode, now = self.mode_now(), self.clock()
        request = CredentialRequest(messages.new_id(), door, mode.value, credential.kind, credential.card, now,
                                    credential.pin)
        decision = self._central(request)
        if decision is not None:
            return decision
        return self._local(request, credential, mode, now)

    def _central(self, request: CredentialRequest) -> messages.Decision | None:
        if self.link is None or not self.link.online:
            return None
        if self.link.matcher_silent and self.cache.confirmed_at:  # known silent: the cache, with no wait
            self.stats["matcher_silent"] += 1
            return None
        try:
            decision = self.link.request(request, NO_PACK, timeout=self.answer_timeout_s, attempts=1,
                                         kind=topics.CREDENTIAL)
        except ApplianceError as exc:
            log.info("matcher did not decide a %s pass: %s", request.kind, exc)
            return None
        self.stats["central"] += 1
        self.last_source = "central"
        return decision

    def _local(self, request: CredentialRequest, credential: Credential, mode: DoorMode,
               now: float) -> messages.Decision:
        """The cache's decision on a card (and its PIN) by the holder it caches; a cache that
        was never synced, or holds no claim key yet, answers ``unavailable``."""
        self.last_source = "local"
        claim = self.cache.claim_of(credential.card)
        if not claim or (not self.cache.confirmed_at and self.cache.count() == 0):
            self.stats["unavailable"] += 1
            decision = messages.Decision(request.request_id, False, messages.Reason.UNAVAILABLE)
            self._event(request, decision, mode)
            return decision
        found = self.cache.claim_holder(claim)
        holder = Holder(found[0], found[2], found[3]) if found else None
        judged = self.judge.judge(request.device_id, mode, credential, holder, now)
        with recorded_pass(self.cache):  # its anti-passback entry only with its event (a full disk: neither)
            verdict = self.admit(request.device_id, judged, request.request_id)
            display = found[1] if found and verdict.accepted else ""
            decision = messages.Decision(request.request_id, verdict.accepted, verdict.reason, display,
                                         round(verdict.retry_after_s, 1),
                                         verdict.subject_id if verdict.accepted else "")
            self._event(request, decision, mode)
        self.stats["local"] += 1
        return decision

    def _event(self, request: CredentialRequest, decision: messages.Decision, mode: DoorMode) -> None:
        """The matcher learns of every local decision, exactly once (never the card or PIN)."""
        if self.pump is None:
            return
        details = {"accepted": decision.accepted, "reason": decision.reason, "subject": decision.subject,
                   "credential": request.kind, "mode": mode.value, "revision": self.cache.revision,
                   "request_id": request.request_id}
        self.pump.submit(topics.EVENT, messages.Event(messages.new_id(), request.device_id, EVENT_KIND,
                                                      request.at, details))
