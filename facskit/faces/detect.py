"""Face detection with dlib's HOG detector, plus an optional CNN check of borderline detections.

dlib's HOG + linear SVM (5 sub-detectors: frontal, left/right profile-ish, tilted) is fast on CPU
(~3.5 ms on a 320 x 180 grey frame) but misses occluded faces: on multi_face.jpg the person with
sunglasses scores -0.48, below the usual threshold 0, while the best false alarm over the no_face.mp4
frames scores -0.06. No single threshold separates them, so for stills a detection scoring between
`weak_threshold` and `threshold` is kept only when dlib's MMOD CNN detector (about 0.3 s on a 220-pixel
crop) also finds a face in a crop around it. Measured: the sunglasses face is confirmed (CNN confidence
1.12) and none of the 300+ weak HOG candidates on the no_face.mp4 and face_noface.mov frames is.

Large images are detected on a copy whose longest side is at most `max_side` pixels; boxes are mapped
back to full-resolution coordinates (landmarks are fitted on the full image).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import dlib
import numpy as np

from facskit.faces.geometry import Box, iou, non_max_suppression
from facskit.faces.models import CNN_FACE_DETECTOR, frontal_face_detector, model_file

NMS_MAX_IOU = 0.3  # detections overlapping more than this are the same face
CNN_FACE_SIDE = 110  # pixels: the crop is scaled so the face is this big (MMOD's window is ~80 px)
CNN_MATCH_IOU = 0.3  # a CNN box must overlap the HOG box this much to confirm it
# candidates_near: the region scanned around a known face, in face sides, and the side the face is shrunk
# to there (the HOG window is 80 px, so 100 px sits one pyramid level above it).
NEAR_REGION = 2.0
NEAR_FACE_SIDE = 100.0


@dataclass(frozen=True)
class DetectedFace:
    """A face box in full-image pixels and dlib's HOG SVM score (> 0 confident; < 0 CNN-confirmed)."""

    box: Box
    score: float


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey from (H, W, 3) RGB or (H, W) grey; the HOG and shape models see grey only."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class FaceDetector:
    """Find every face in an image: `detect(image) -> list[DetectedFace]`, best score first.

    upsample: HOG pyramid upsampling steps; 0 finds faces >= 80 px (in the downscaled copy), 1 >= 40 px
      at ~4x the time. threshold: HOG score at or above which a face is accepted outright.
    weak_threshold, verify_weak: with verify_weak, detections scoring in [weak_threshold, threshold) are
      kept only if the CNN confirms them (at most `max_verified` of them, best first).
    max_side: longest side, in pixels, of the copy the HOG detector runs on.
    """

    def __init__(
        self,
        upsample: int = 1,
        threshold: float = 0.0,
        weak_threshold: float = -0.6,
        verify_weak: bool = True,
        max_side: int = 1280,
        max_verified: int = 8,
    ) -> None:
        self.upsample = upsample
        self.threshold = threshold
        self.weak_threshold = weak_threshold
        self.verify_weak = verify_weak
        self.max_side = max_side
        self.max_verified = max_verified
        # One HOG detector per thread: dlib's object_detector scans through a `mutable` image scanner that
        # holds the feature pyramid, so two threads running one detector crash (seen: photos analysed on
        # two threads, segmentation fault in run()). A copy loads from the cache in ~1 ms.
        self._hogs = threading.local()
        self._hog_for_thread()
        self._cnn: dlib.cnn_face_detection_model_v1 | None = None
        # dlib's CNN keeps each layer's output in the network object: one thread at a time runs it (it
        # checks a few borderline boxes; the HOG scans, most of the time, run side by side).
        self._cnn_lock = threading.Lock()

    @classmethod
    def for_video(cls) -> FaceDetector:
        """The fast setting the tracker uses: no upsampling, detection on a <= 640-pixel copy, no CNN."""
        return cls(upsample=0, verify_weak=False, max_side=640)

    def candidates(self, image: np.ndarray, min_score: float) -> list[DetectedFace]:
        """Every HOG detection scoring >= min_score, in full-image pixels, after non-max suppression.

        On an RGB image the HOG takes the strongest gradient over the three channels, which scores faces
        in colour photos better (the sunglasses face of multi_face.jpg: -0.48 on RGB, -0.72 on grey);
        on grey it is ~1.5x faster, which is what the tracker passes.
        """
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        boxes, scores = self._run_hog(small, min_score, (scale, scale), (0.0, 0.0))
        kept = non_max_suppression(boxes, scores, NMS_MAX_IOU)
        return [DetectedFace(boxes[i], scores[i]) for i in kept]

    def candidates_near(
        self, image: np.ndarray, around: Sequence[Box], min_score: float
    ) -> list[DetectedFace]:
        """As :meth:`candidates`, but scanning only a square of ``NEAR_REGION`` x each box's side around it,
        shrunk so that the box is ``NEAR_FACE_SIDE`` pixels (never finer than :meth:`candidates` sees it).

        This is how a tracker confirms the faces it follows: on a 640 x 360 frame with one 216-pixel face
        the HOG takes 2.9 ms on that region against 17.2 ms on the whole frame (measured on
        WolfgangLanger_Pexels.mp4, score 1.95 against 1.88). A face elsewhere in the frame is not seen.
        """
        height, width = image.shape[:2]
        finest = min(1.0, self.max_side / max(height, width))
        boxes: list[Box] = []
        scores: list[float] = []
        for box in around:
            side = max(box.w, box.h)
            if not side > 0:
                continue
            cx, cy = box.centre
            half = NEAR_REGION * side / 2
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(width, int(np.ceil(cx + half))), min(height, int(np.ceil(cy + half)))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            region = image[y0:y1, x0:x1]
            scale = min(finest, NEAR_FACE_SIDE / side)
            size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
            if scale < 1.0:
                region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
            else:
                size = (x1 - x0, y1 - y0)
            factors = (size[0] / (x1 - x0), size[1] / (y1 - y0))
            found, found_scores = self._run_hog(np.ascontiguousarray(region), min_score, factors, (x0, y0))
            boxes += found
            scores += found_scores
        kept = non_max_suppression(boxes, scores, NMS_MAX_IOU)
        return [DetectedFace(boxes[i], scores[i]) for i in kept]

    def near_share(self, shape: tuple[int, ...], around: Sequence[Box]) -> float:
        """Pixels :meth:`candidates_near` would scan around ``around``, as a share of those :meth:`candidates`
        scans on an image of ``shape`` (the HOG's time is about proportional to them)."""
        height, width = shape[:2]
        finest = min(1.0, self.max_side / max(height, width))
        near = 0.0
        for box in around:
            side = max(box.w, box.h)
            if not side > 0:
                continue
            region = min(NEAR_REGION * side, float(max(height, width))) * min(finest, NEAR_FACE_SIDE / side)
            near += region * region
        return near / (height * width * finest * finest)

    def _run_hog(
        self, image: np.ndarray, min_score: float, factors: tuple[float, float], origin: tuple[float, float]
    ) -> tuple[list[Box], list[float]]:
        """dlib's HOG on ``image`` (a copy scaled by ``factors`` of the region at ``origin``), its boxes in
        the full image's pixels."""
        rects, scores, _ = self._hog_for_thread().run(image, self.upsample, min_score)
        fx, fy = factors
        boxes = [
            Box(origin[0] + r.left() / fx, origin[1] + r.top() / fy, r.width() / fx, r.height() / fy)
            for r in rects
        ]
        return boxes, [float(score) for score in scores]

    def _hog_for_thread(self) -> Any:
        """This thread's copy of dlib's HOG frontal face detector."""
        hog = getattr(self._hogs, "detector", None)
        if hog is None:
            hog = self._hogs.detector = frontal_face_detector()  # cached serialised copy: ~1 ms
        return hog

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in an RGB or grey image, best score first (see the class docstring for the rules)."""
        floor = self.weak_threshold if self.verify_weak else self.threshold
        found = self.candidates(image, floor)
        strong = [face for face in found if face.score >= self.threshold]
        weak = [face for face in found if face.score < self.threshold][: self.max_verified]
        confirmed = [face for face in weak if self._cnn_confirms(image, face.box)]
        return strong + confirmed

    def _cnn_confirms(self, image: np.ndarray, box: Box) -> bool:
        """Run the MMOD CNN on a crop twice the box's size, scaled so the face is CNN_FACE_SIDE px."""
        side = max(box.w, box.h)
        scale = CNN_FACE_SIDE / side
        cx, cy = box.centre
        crop_side = int(round(2 * side * scale))
        to_crop = np.float32([[scale, 0, -(cx - side) * scale], [0, scale, -(cy - side) * scale]])
        crop = cv2.warpAffine(image, to_crop, (crop_side, crop_side), borderMode=cv2.BORDER_REPLICATE)
        expected = Box((side / 2) * scale, (side / 2) * scale, box.w * scale, box.h * scale)
        with self._cnn_lock:
            if self._cnn is None:
                self._cnn = dlib.cnn_face_detection_model_v1(str(model_file(CNN_FACE_DETECTOR)))
            found_faces = list(self._cnn(crop, 0))
        for found in found_faces:
            rect = found.rect
            if iou(expected, Box(rect.left(), rect.top(), rect.width(), rect.height())) >= CNN_MATCH_IOU:
                return True
        return False
