"""Turning a probe into a decision: thresholds, 1:1 and 1:N, failure limits.

Pure logic with no transport, so the service, the device cache (offline mode) and the
tests share it. Scores stay inside this module; callers get a ``Verdict``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.matcher.gallery import Gallery
from appliance.protocol.messages import Reason
from appliance.vision.templates import Template

MAX_CONSECUTIVE_FAILURES = 5
BACKOFF_S = 30.0


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    subject_id: str = ""  # pseudonym; empty when nobody matched
    retry_after_s: float = 0.0


@dataclass
class FailureTracker:
    """Consecutive failures per key (a claimed identity or a device); after
    ``limit`` failures the key is locked for ``backoff_s`` and then must use the
    non-face alternative until an operator or a successful alternative clears it."""

    limit: int = MAX_CONSECUTIVE_FAILURES
    backoff_s: float = BACKOFF_S
    _failures: dict[str, int] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> float:
        return max(0.0, self._locked_until.get(key, 0.0) - now)

    def record(self, key: str, success: bool, now: float) -> None:
        if success:
            self._failures.pop(key, None)
            self._locked_until.pop(key, None)
            return
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        if count >= self.limit:
            self._locked_until[key] = now + self.backoff_s

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)
        self._locked_until.pop(key, None)


class MatchEngine:
    def __init__(self, gallery: Gallery, threshold: float, resolve_claim: Callable[[str], str | None],
                 tracker: FailureTracker | None = None):
        self.gallery = gallery
        self.threshold = threshold
        self.resolve_claim = resolve_claim
        self.tracker = tracker or FailureTracker()

    def decide(self, device_id: str, template: Template, claim: str, now: float) -> Verdict:
        device_key = f"device:{device_id}"
        subject = self.resolve_claim(claim) if claim else None
        keys = [device_key] + ([f"subject:{subject}"] if subject else [])
        wait = max(self.tracker.retry_after(k, now) for k in keys)
        if wait > 0:
            return Verdict(False, Reason.LOCKED_OUT, retry_after_s=wait)
        if claim:
            if subject is None or subject not in self.gallery:
                verdict = Verdict(False, Reason.UNKNOWN_CLAIM)
            else:
                score = self.gallery.score(subject, template)
                accepted = score is not None and score >= self.threshold
                verdict = Verdict(accepted, Reason.MATCH if accepted else Reason.NO_MATCH, subject if accepted else "")
        else:
            best = self.gallery.best(template)
            accepted = best is not None and best.score >= self.threshold
            verdict = Verdict(accepted, Reason.MATCH if accepted else Reason.NO_MATCH,
                              best.subject_id if accepted and best else "")
        for key in keys:
            self.tracker.record(key, verdict.accepted, now)
        return verdict
