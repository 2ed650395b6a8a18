"""68 facial landmarks with dlib's ensemble-of-regression-trees shape predictor (Kazemi & Sullivan 2014),
trained on iBUG 300-W; ~1.1 ms per face on one core."""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np

from facskit.errors import FacskitError
from facskit.faces.geometry import Box, detector_box_from_landmarks, iou
from facskit.faces.models import SHAPE_PREDICTOR_68, model_file

MIN_FIT_IOU = 0.5  # landmarks whose own box overlaps the start box less than this did not fit a face
MIN_FACE_CONTRAST = 6.0  # grey-level standard deviation; a blank (black, sky) patch is below it


class LandmarkPredictor:
    """`predict(gray, box) -> float32 (68, 2)` landmark pixel coordinates, iBUG-68 order."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        path = Path(model_path) if model_path is not None else model_file(SHAPE_PREDICTOR_68)
        if not path.is_file():
            raise FacskitError(f"{path}: landmark model file not found")
        self._predictor = dlib.shape_predictor(str(path))

    def predict(self, gray: np.ndarray, box: Box) -> np.ndarray:
        """Fit the 68 points starting from `box` (a HOG-detector-like box) on a (H, W) uint8 grey image."""
        rect = dlib.rectangle(
            int(round(box.x)), int(round(box.y)), int(round(box.x + box.w)), int(round(box.y + box.h))
        )
        shape = self._predictor(gray, rect)
        return np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float32)


def landmarks_plausible(gray: np.ndarray, start_box: Box, landmarks: np.ndarray) -> bool:
    """Did the predictor find a face, or just bend its mean shape over whatever was in the box?

    Two cheap checks: the landmarks' own detector-like box must overlap the box the fit started from
    (a fit on a non-face drifts and shrinks), and the face region must have some contrast (a black or
    flat frame after a scene cut keeps a perfectly shaped but meaningless mean face).
    """
    fitted = detector_box_from_landmarks(landmarks)
    if iou(fitted, start_box) < MIN_FIT_IOU:
        return False
    height, width = gray.shape
    x0, y0 = max(0, int(fitted.x)), max(0, int(fitted.y))
    x1, y1 = min(width, int(fitted.x + fitted.w)), min(height, int(fitted.y + fitted.h))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return False
    return float(gray[y0:y1:2, x0:x1:2].std()) >= MIN_FACE_CONTRAST
