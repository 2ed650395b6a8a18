"""68 facial landmarks with dlib's ensemble-of-regression-trees shape predictor (Kazemi & Sullivan 2014),
trained on iBUG 300-W; ~1.5 ms per face on one core (dlib's own: ~1.1 ms).

The predictor runs in numpy (facskit.faces.ert) on a copy of dlib's model decoded once into facskit's
cache, with the same integer points as dlib (1.33 million points compared, all equal): loading dlib's own
predictor takes 0.6-0.9 s on every start, the memory-mapped copy 8-10 ms
(benchmarks/results/landmarks_numpy.md). dlib's predictor is still used where the model cannot be
converted (a warning says so), or on request (``engine="dlib"``, or FACSKIT_LANDMARK_ENGINE=dlib).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from facskit.errors import FacskitError
from facskit.faces.dlib_format import DlibFormatError
from facskit.faces.ert import ErtShapePredictor, ert_predictor
from facskit.faces.geometry import Box, detector_box_from_landmarks, iou
from facskit.faces.models import SHAPE_PREDICTOR_68, model_file

log = logging.getLogger(__name__)

ENGINE_VARIABLE = "FACSKIT_LANDMARK_ENGINE"  # "dlib" forces dlib's own predictor (comparisons, benchmarks)
MIN_FIT_IOU = 0.5  # landmarks whose own box overlaps the start box less than this did not fit a face
MIN_FACE_CONTRAST = 6.0  # grey-level standard deviation; a blank (black, sky) patch is below it


class LandmarkPredictor:
    """`predict(gray, box) -> float32 (68, 2)` landmark pixel coordinates, iBUG-68 order.

    engine: "numpy" (the default; dlib's where the model cannot be converted) or "dlib"; None reads
    $FACSKIT_LANDMARK_ENGINE, else "numpy". Both give the same points.
    """

    def __init__(self, model_path: str | Path | None = None, *, engine: str | None = None) -> None:
        path = Path(model_path) if model_path is not None else model_file(SHAPE_PREDICTOR_68)
        if not path.is_file():
            raise FacskitError(f"{path}: landmark model file not found")
        engine = engine or os.environ.get(ENGINE_VARIABLE) or "numpy"
        if engine not in ("numpy", "dlib"):
            raise FacskitError(f"unknown landmark engine {engine!r}: use 'numpy' or 'dlib'")
        self._ert: ErtShapePredictor | None = None
        self._dlib: Any = None
        if engine == "numpy":
            try:
                self._ert = ert_predictor(path)
            except (OSError, MemoryError, ValueError, DlibFormatError) as error:
                log.warning(
                    "%s: cannot convert the landmark model for facskit's predictor (%s); using dlib's own, "
                    "which takes about a second and 100 MB more to load",
                    path,
                    error,
                )
        if self._ert is None:
            import dlib

            self._dlib = dlib.shape_predictor(str(path))

    @property
    def engine(self) -> str:
        """Which predictor fits the points: "numpy" or "dlib"."""
        return "numpy" if self._ert is not None else "dlib"

    def predict(self, gray: np.ndarray, box: Box) -> np.ndarray:
        """Fit the 68 points starting from `box` (a HOG-detector-like box) on a (H, W) uint8 grey image."""
        left, top = int(round(box.x)), int(round(box.y))
        right, bottom = int(round(box.x + box.w)), int(round(box.y + box.h))
        if self._ert is not None:
            return self._ert.predict(gray, left, top, right, bottom).astype(np.float32)
        import dlib

        shape = self._dlib(gray, dlib.rectangle(left, top, right, bottom))
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
