"""What one device may send to one matcher replica: a token-bucket budget per kind of message,
how many refusals in one window make a flood, and how long a flooding device stays muted
(``Limits.mute_s``: doubled for every mute in a row). ``matcher.gate`` enforces them; the
configured defaults (``[matcher]``) are the one source of the request and reject numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.config import MatcherConfig
from appliance.protocol import topics

_DEFAULTS = MatcherConfig()  # the configured defaults are the one source of the request/reject numbers
# Outbox drains: a door back online sends its backlog one outbox window (200 by default) at a
# time; 1,000/s drains 100,000 events in under two minutes (unlimited it measured ~1,300/s).
EVENTS_PER_S, EVENT_BURST = 1000.0, 2000
# Alarms are rare (one per attack attempt or outage) and each is audited when recorded.
ALARMS_PER_S, ALARM_BURST = 2.0, 50
# Sync: a request and an acknowledgement per answer of up to 8 deltas (104 templates of 512-d);
# a snapshot asks again at once, so this allows ~2,600 templates/s to one device (a fresh
# device measured ~1,700/s unlimited) and a resend after a drop.
SYNC_PER_S, SYNC_BURST = 50.0, 100
MAX_DOUBLINGS = 32  # a bound on the exponent only: mute_max_s caps the length well before it


@dataclass(frozen=True)
class Budget:
    """A token bucket's shape: ``rate_per_s`` messages a second sustained, ``burst`` at once."""

    rate_per_s: float
    burst: int


@dataclass(frozen=True)
class Limits:
    """What one device may send to one replica: a budget per kind of message, how many refusals
    in one window make it a flood, and how long a flood mutes it (``mute_s``)."""

    requests: Budget = Budget(_DEFAULTS.device_requests_per_s, _DEFAULTS.device_request_burst)
    events: Budget = Budget(EVENTS_PER_S, EVENT_BURST)
    alarms: Budget = Budget(ALARMS_PER_S, ALARM_BURST)
    sync: Budget = Budget(SYNC_PER_S, SYNC_BURST)
    rejects_per_window: int = _DEFAULTS.device_rejects_per_window
    window_s: float = _DEFAULTS.reject_window_s
    mute_max_s: float = _DEFAULTS.device_mute_max_s

    @classmethod
    def from_config(cls, matcher: MatcherConfig) -> Limits:
        return cls(requests=Budget(matcher.device_requests_per_s, matcher.device_request_burst),
                   rejects_per_window=matcher.device_rejects_per_window, window_s=matcher.reject_window_s,
                   mute_max_s=matcher.device_mute_max_s)

    def mute_s(self, strikes: int) -> float:
        """How long the window of a device muted ``strikes`` times in a row lasts: one window,
        doubled for every mute since, at most ``mute_max_s`` (and never less than one window)."""
        return max(self.window_s, min(self.mute_max_s, self.window_s * 2.0 ** min(strikes - 1, MAX_DOUBLINGS)))

    def budget(self, kind: str) -> Budget | None:
        # asked for every message on the network thread: compared, not a dict built per call
        if kind == topics.REQUEST:
            return self.requests
        if kind == topics.EVENT:
            return self.events
        if kind == topics.ALARM:
            return self.alarms
        return self.sync if kind == topics.SYNC_ACK else None


class TokenBucket:
    """One device's tokens for one kind of message (a ``Budget``'s state)."""

    __slots__ = ("tokens", "at")

    def __init__(self, budget: Budget, now: float):
        self.tokens, self.at = float(budget.burst), now

    def take(self, budget: Budget, now: float, cost: int = 1) -> bool:
        self.tokens = min(float(budget.burst), self.tokens + (now - self.at) * budget.rate_per_s)
        self.at = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True
