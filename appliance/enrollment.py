"""Quality-gated enrollment from a few images: the one policy the matcher, the admin CLI
and the evaluation's failure-to-enrol rate all use."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from appliance.pipeline import FacePipeline
from appliance.vision.templates import Template, normalise

ENROLLMENT_ATTEMPTS = 3  # an identity fails to enrol when none of its first 3 images passes
MAX_ENROLLMENT_IMAGES = 5  # templates fused into one reference


@dataclass
class EnrollmentResult:
    template: Template | None  # the fused reference; None = failure to enrol
    used: int = 0
    rejections: list[list[str]] = field(default_factory=list)  # quality codes per rejected image

    @property
    def enrolled(self) -> bool:
        return self.template is not None


def enroll(pipeline: FacePipeline, images: Iterable[np.ndarray], attempts: int = ENROLLMENT_ATTEMPTS,
           max_images: int = MAX_ENROLLMENT_IMAGES) -> EnrollmentResult:
    """Fuse the templates of the images that pass the enrollment profile.

    Looks at ``attempts`` images, then keeps going only while at least one has passed,
    up to ``max_images`` accepted; the reference is the normalised mean of the accepted
    templates (more robust than any single capture).
    """
    profile = pipeline.config.quality_enrollment
    accepted: list[Template] = []
    rejections: list[list[str]] = []
    for seen, image in enumerate(images, start=1):
        if seen > attempts and not accepted:
            break
        analysis = pipeline.analyze(image, profile)
        if analysis.aligned is None:
            rejections.append(analysis.quality.codes)
            continue
        extraction = pipeline.extract([analysis], profile)[0]
        if extraction.analysis.quality.passed:
            accepted.append(extraction.template)
            if len(accepted) == max_images:
                break
        else:
            rejections.append(extraction.analysis.quality.codes)
    if not accepted:
        return EnrollmentResult(None, 0, rejections)
    fused = normalise(np.mean([t.vector for t in accepted], axis=0))
    pack = accepted[0]
    return EnrollmentResult(Template(fused, pack.pack_id, pack.pack_version), len(accepted), rejections)
