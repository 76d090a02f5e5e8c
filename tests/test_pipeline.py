"""The face pipeline on real models and real images from the shared folder."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.capture.images import read_image
from appliance.vision.templates import similarity


def test_two_faces_are_found_and_the_subject_chosen(pipeline, faces):
    detection = pipeline.detect(read_image(faces / "deepface-pairs" / "couple.jpg"))
    assert len(detection.faces) == 2
    subject = detection.subject
    assert subject is not None and subject.mesh is not None and subject.mesh.shape == (478, 3)
    assert subject.area >= max(f.area for f in detection.others)
    assert subject.pose is not None and "eyeBlinkLeft" in subject.blendshapes


def test_tiny_tightly_cropped_faces_are_found(pipeline, faces):
    # AT&T/ORL files are 23x28 px with the face touching the borders
    images = sorted((faces / "att-orl" / "s1").glob("*.pgm"))
    found = [pipeline.detect(read_image(p)).subject is not None for p in images]
    assert all(found)


def test_closed_eyes_are_rejected_and_open_eyes_are_not(pipeline, faces, config):
    subjects = sorted((faces / "yale").iterdir())
    assert len(subjects) == 15

    def eyes_closed(name: str) -> list[bool]:
        flags = []
        for subject in subjects:
            analysis = pipeline.analyze(read_image(subject / f"{name}.png"), config.quality_enrollment)
            flags.append("eyes_closed" in analysis.quality.codes)
        return flags

    assert sum(eyes_closed("sleepy")) >= 12
    assert sum(eyes_closed("normal")) <= 1


def test_templates_are_unit_vectors_that_separate_people(pipeline, faces):
    ids = sorted((faces / "celeba-dev").iterdir())[:2]
    images = [read_image(p) for p in sorted(ids[0].glob("*.jpg"))[:2] + sorted(ids[1].glob("*.jpg"))[:1]]
    analyses = [pipeline.analyze(image) for image in images]
    extractions = pipeline.extract(analyses)
    templates = [e.template for e in extractions]
    for template in templates:
        assert template.vector.dtype == np.float32
        assert np.linalg.norm(template.vector) == pytest.approx(1.0, abs=1e-5)
        assert template.pack_id == "w600k-mbf"
    assert similarity(templates[0], templates[1]) > pipeline.threshold > similarity(templates[0], templates[2])
    for extraction in extractions:
        assert extraction.utility > 0 and "embedding" in extraction.analysis.timings_ms


def test_batch_extraction_matches_single(pipeline, faces):
    paths = sorted((faces / "celeba-dev").iterdir())[3].glob("*.jpg")
    analyses = [pipeline.analyze(read_image(p)) for p in sorted(paths)[:4]]
    batch = [e.template.vector for e in pipeline.extract(analyses)]
    single = [pipeline.extract([a])[0].template.vector for a in analyses]
    np.testing.assert_allclose(batch, single, atol=1e-4)


def test_dlib_pack_is_a_working_commercial_alternative(config, faces):
    from appliance.pipeline import FacePipeline

    dlib_pipeline = FacePipeline(config, embedder_pack="dlib-resnet-v1")
    try:
        ids = [faces / "att-orl" / "s1", faces / "att-orl" / "s2"]
        images = [read_image(ids[0] / "1.pgm"), read_image(ids[0] / "2.pgm"), read_image(ids[1] / "1.pgm")]
        templates = [e.template for e in dlib_pipeline.extract([dlib_pipeline.analyze(i) for i in images])]
        assert templates[0].vector.shape == (128,)
        assert similarity(templates[0], templates[1]) > similarity(templates[0], templates[2])
        assert dlib_pipeline.embedder_pack.commercial_use
    finally:
        dlib_pipeline.close()
