"""Boxes and the few geometric helpers detection and tracking share.

A box is (x, y, w, h) in pixels, top-left corner plus size, float. Landmark arrays are float32 (68, 2).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# How the dlib HOG detector's box relates to the 68 landmarks it leads to (measured on 83 faces of the
# shared media): side = 2.73 x the RMS distance of the landmarks from their mean, and the box centre sits
# 0.053 x side above that mean. Tracking re-creates such a box from the previous frame's landmarks, which
# is the box the shape predictor was trained to start from.
BOX_SIDE_PER_LANDMARK_SPREAD = 2.726
BOX_CENTRE_ABOVE_LANDMARK_MEAN = 0.053  # fraction of the box side


class Box(NamedTuple):
    """Axis-aligned box in pixels: top-left corner (x, y), width w, height h."""

    x: float
    y: float
    w: float
    h: float

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    def scaled(self, factor: float) -> Box:
        """The box in an image resized by `factor` (both axes)."""
        return Box(self.x * factor, self.y * factor, self.w * factor, self.h * factor)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, 0..1."""
    left, top = max(a.x, b.x), max(a.y, b.y)
    right, bottom = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def detector_box_from_landmarks(landmarks: np.ndarray) -> Box:
    """The square box the HOG detector would most likely have given for a face with these landmarks."""
    mean = landmarks.mean(axis=0)
    spread = float(np.sqrt(((landmarks - mean) ** 2).sum(axis=1).mean()))
    side = BOX_SIDE_PER_LANDMARK_SPREAD * spread
    cx, cy = float(mean[0]), float(mean[1]) - BOX_CENTRE_ABOVE_LANDMARK_MEAN * side
    return Box(cx - side / 2, cy - side / 2, side, side)


def non_max_suppression(boxes: list[Box], scores: list[float], max_iou: float) -> list[int]:
    """Indices of the boxes kept, best score first, dropping any box overlapping a kept one by > max_iou."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[j]) <= max_iou for j in kept):
            kept.append(i)
    return kept
