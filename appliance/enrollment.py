"""Quality-gated enrollment: the one policy every entry point uses (the admin CLI, the REST
API and the console through ``matcher.enrollment_desk``, the door camera on the device, the
demo) and the evaluation's failure-to-enrol rate counts against.

ISO/IEC 19795-5 (access control) asks, unless dictated otherwise, for up to 3 enrolment
attempts of up to 3 captures each: captures are judged in groups of
``CAPTURES_PER_ATTEMPT``; the first attempt with an accepted capture completes the
enrollment, and when ``ENROLLMENT_ATTEMPTS`` attempts pass without one the person fails to
enrol. Each capture is judged with the configuration's enrollment profile (strict); every
rejected one keeps its reason codes and the person-facing guidance (``vision.quality``), so
whoever enrolls can say what to change. The reference template is the normalised mean of the
accepted captures of the completing attempt (more robust than any single capture).

Pure: no stores and no transport. ``EnrollmentSession`` takes captures one at a time (a door
camera feeds it frame by frame), ``enroll`` runs it over a sequence of images.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from appliance.pipeline import FacePipeline
from appliance.vision.quality import QualityIssue, QualityReport
from appliance.vision.templates import Template, normalise

ENROLLMENT_ATTEMPTS = 3  # ISO/IEC 19795-5: up to 3 attempts before a failure to enrol
CAPTURES_PER_ATTEMPT = 3  # ... of up to 3 captures each
MAX_ENROLLMENT_CAPTURES = ENROLLMENT_ATTEMPTS * CAPTURES_PER_ATTEMPT  # the most one enrollment looks at
MIN_ACCEPTED_PER_ATTEMPT = 1  # an attempt succeeds with this many accepted captures


@dataclass(frozen=True)
class RejectedCapture:
    """One capture that did not pass, with what the person should change."""

    label: str  # the file name, upload name or frame number it came from
    issues: tuple[QualityIssue, ...]

    @property
    def codes(self) -> list[str]:
        return [issue.code for issue in self.issues]

    @property
    def reason(self) -> str:
        return ", ".join(self.codes)

    @property
    def guidance(self) -> str:
        """The person-facing advice, each piece once, in the order the issues came."""
        return "; ".join(dict.fromkeys(issue.guidance for issue in self.issues))


@dataclass
class EnrollmentResult:
    template: Template | None  # the fused reference; None = failure to enrol
    used: int = 0  # accepted captures fused into the template
    rejections: list[list[str]] = field(default_factory=list)  # quality codes per rejected capture
    rejected: list[RejectedCapture] = field(default_factory=list)  # the same, with labels and guidance
    attempts: int = 0  # attempts started
    quality: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # scores of the accepted

    @property
    def enrolled(self) -> bool:
        return self.template is not None


class EnrollmentSession:
    """The policy as a state machine over judged captures: ``add`` each, stop when ``done``."""

    def __init__(self, attempts: int = ENROLLMENT_ATTEMPTS, captures_per_attempt: int = CAPTURES_PER_ATTEMPT):
        if attempts < 1 or captures_per_attempt < 1:
            raise ValueError("an enrollment needs at least one attempt of one capture")
        self.attempts, self.captures_per_attempt = attempts, captures_per_attempt
        self._accepted: list[tuple[Template, float]] = []  # of the attempt under way
        self._rejected: list[RejectedCapture] = []
        self._seen = 0
        self._completed = False

    @property
    def attempt(self) -> int:
        """The attempt the next capture belongs to (1-based)."""
        return self._seen // self.captures_per_attempt + 1

    @property
    def done(self) -> bool:
        return self._completed or self._seen >= self.attempts * self.captures_per_attempt

    def add(self, label: str, report: QualityReport, template: Template | None) -> bool:
        """Judge one capture (its quality report under the enrollment profile and its template,
        None when no face was found); True when it was accepted."""
        if self.done:
            raise ValueError("the enrollment is complete; no more captures are judged")
        self._seen += 1
        accepted = template is not None and report.passed
        if accepted:
            self._accepted.append((template, report.score))
        else:
            self._rejected.append(RejectedCapture(label, report.issues))
        if self._seen % self.captures_per_attempt == 0:  # the attempt is over
            self._completed = len(self._accepted) >= MIN_ACCEPTED_PER_ATTEMPT
        return accepted

    def result(self) -> EnrollmentResult:
        """The fused reference of the accepted captures, or a failure to enrol; a short last
        attempt (the captures ran out) counts with what it has."""
        rejected = list(self._rejected)
        attempts = min(self.attempts, -(-self._seen // self.captures_per_attempt))
        if len(self._accepted) < MIN_ACCEPTED_PER_ATTEMPT:
            return EnrollmentResult(None, 0, [r.codes for r in rejected], rejected, attempts)
        templates = [template for template, _ in self._accepted]
        fused = normalise(np.mean([t.vector for t in templates], axis=0)).astype(np.float32)
        scores = np.array([score for _, score in self._accepted], np.float32)
        first = templates[0]
        return EnrollmentResult(Template(fused, first.pack_id, first.pack_version), len(templates),
                                [r.codes for r in rejected], rejected, attempts, scores)


def judge(pipeline: FacePipeline, image: np.ndarray) -> tuple[QualityReport, Template | None]:
    """One capture under the enrollment profile: its report (template utility included when a
    face was found) and its template."""
    analysis, template = pipeline.template(image, pipeline.config.quality_enrollment)
    return analysis.quality, template


def enroll_labelled(pipeline: FacePipeline, images: Iterable[tuple[str, np.ndarray]],
                    attempts: int = ENROLLMENT_ATTEMPTS,
                    captures_per_attempt: int = CAPTURES_PER_ATTEMPT) -> EnrollmentResult:
    """The policy over ``(label, image)`` pairs, taken lazily: images after the completing
    attempt are never decoded (pass a generator) nor judged."""
    session = EnrollmentSession(attempts, captures_per_attempt)
    for label, image in images:
        session.add(label, *judge(pipeline, image))
        if session.done:
            break
    return session.result()


def enroll(pipeline: FacePipeline, images: Iterable[np.ndarray], attempts: int = ENROLLMENT_ATTEMPTS,
           captures_per_attempt: int = CAPTURES_PER_ATTEMPT) -> EnrollmentResult:
    """``enroll_labelled`` with each image labelled by its position (1-based)."""
    return enroll_labelled(pipeline, ((str(n), image) for n, image in enumerate(images, start=1)), attempts,
                           captures_per_attempt)
