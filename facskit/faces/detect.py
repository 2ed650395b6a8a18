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

from dataclasses import dataclass

import cv2
import dlib
import numpy as np

from facskit.faces.geometry import Box, iou, non_max_suppression
from facskit.faces.models import CNN_FACE_DETECTOR, frontal_face_detector, model_file

NMS_MAX_IOU = 0.3  # detections overlapping more than this are the same face
CNN_FACE_SIDE = 110  # pixels: the crop is scaled so the face is this big (MMOD's window is ~80 px)
CNN_MATCH_IOU = 0.3  # a CNN box must overlap the HOG box this much to confirm it


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
        self._hog = frontal_face_detector()  # cached serialised copy: ~1 ms, not 0.5-0.8 s
        self._cnn: dlib.cnn_face_detection_model_v1 | None = None

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
        rects, scores, _ = self._hog.run(small, self.upsample, min_score)
        boxes = [Box(r.left() / scale, r.top() / scale, r.width() / scale, r.height() / scale) for r in rects]
        kept = non_max_suppression(boxes, list(scores), NMS_MAX_IOU)
        return [DetectedFace(boxes[i], float(scores[i])) for i in kept]

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
        if self._cnn is None:
            self._cnn = dlib.cnn_face_detection_model_v1(str(model_file(CNN_FACE_DETECTOR)))
        side = max(box.w, box.h)
        scale = CNN_FACE_SIDE / side
        cx, cy = box.centre
        crop_side = int(round(2 * side * scale))
        to_crop = np.float32([[scale, 0, -(cx - side) * scale], [0, scale, -(cy - side) * scale]])
        crop = cv2.warpAffine(image, to_crop, (crop_side, crop_side), borderMode=cv2.BORDER_REPLICATE)
        expected = Box((side / 2) * scale, (side / 2) * scale, box.w * scale, box.h * scale)
        for found in self._cnn(crop, 0):
            rect = found.rect
            if iou(expected, Box(rect.left(), rect.top(), rect.width(), rect.height())) >= CNN_MATCH_IOU:
                return True
        return False
