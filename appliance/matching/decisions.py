"""Turning a probe into a decision: thresholds, 1:1 and 1:N, failure limits.

Pure logic with no transport, so the matcher service, the device cache (offline and local
matching) and the tests share it. Scores stay inside ``appliance.matching``; callers get a
``Verdict``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.matching.gallery import Gallery
from appliance.matching.limits import FailureTracker
from appliance.protocol.messages import Reason
from appliance.vision.templates import Template


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    subject_id: str = ""  # pseudonym; empty when nobody matched
    retry_after_s: float = 0.0


class MatchEngine:
    """Decides one probe against a gallery: a claim (card, PIN, QR) makes it 1:1 against the
    claimed subject, no claim makes it 1:N. Failures count per device and, for a claim, per
    claimed subject; a locked key answers ``locked_out`` with the seconds left."""

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
