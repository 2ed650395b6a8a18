"""Faces in a still image: detect (HOG + CNN check of borderline boxes), then 68 landmarks and pose."""

from __future__ import annotations

import numpy as np

from facskit.faces.detect import FaceDetector, to_gray
from facskit.faces.geometry import detector_box_from_landmarks
from facskit.faces.landmarks import LandmarkPredictor, landmarks_plausible
from facskit.faces.pose import head_pose
from facskit.faces.track import TrackedFace


def faces_in_image(
    image: np.ndarray, detector: FaceDetector, predictor: LandmarkPredictor
) -> list[TrackedFace]:
    """Every face in an RGB or grey image, ids 0, 1, ... from left to right (box centre x).

    Landmarks are fitted on the full-resolution image even when detection ran on a downscaled copy.
    A face whose landmark fit looks implausible is kept with success=False, since the detector saw it.
    """
    gray = to_gray(image)
    height, width = gray.shape
    fitted = []
    for detection in detector.detect(image):
        landmarks = predictor.predict(gray, detection.box)
        fitted.append((detection, landmarks, landmarks_plausible(gray, detection.box, landmarks)))
    fitted.sort(key=lambda item: item[0].box.centre[0])
    return [
        TrackedFace(
            face_id,
            detector_box_from_landmarks(landmarks),
            detection.score,
            landmarks,
            plausible,
            head_pose(landmarks, (width, height)),
        )
        for face_id, (detection, landmarks, plausible) in enumerate(fitted)
    ]
