"""dlib's HOG face detector from facskit's cached serialised copy detects exactly as the one dlib builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_FACE = Path(__file__).resolve().parents[2] / "facskit" / "assets" / "sample_face.jpg"


def test_cached_hog_detector_is_written_once_and_detects_identically(tmp_path, monkeypatch) -> None:
    import dlib

    from facskit.faces.models import frontal_face_detector
    from facskit.io import read_image

    monkeypatch.setenv("FACSKIT_CACHE", str(tmp_path))
    built = frontal_face_detector()  # builds, then writes the copy
    copies = list((tmp_path / "dlib").glob("frontal_face_detector-*.svm"))
    assert len(copies) == 1
    cached = frontal_face_detector()  # loads the copy
    assert isinstance(cached, dlib.fhog_object_detector)
    gray = np.ascontiguousarray(read_image(SAMPLE_FACE).mean(axis=2).astype(np.uint8))
    reference = dlib.get_frontal_face_detector()
    for detector in (built, cached):
        boxes, scores, kinds = detector.run(gray, 1, -1.0)
        ref_boxes, ref_scores, ref_kinds = reference.run(gray, 1, -1.0)
        assert [str(b) for b in boxes] == [str(b) for b in ref_boxes]
        assert list(scores) == list(ref_scores) and list(kinds) == list(ref_kinds)
    copies[0].write_bytes(b"not a detector")
    assert frontal_face_detector() is not None  # an unreadable copy is rebuilt, not an error
