"""Where on a face a displacement field moves things: the mobile parts, the rest of the face, the background.

TCAE's claim about its fields (issue #7's grid criterion) is spatial: AU motion is confined to the face's
mobile parts, head motion is spread over the whole face. A grid shows it to the eye; this module puts a
number on it so runs can be compared. The regions come from the target frame's 68 landmarks:

* **mobile parts**: the convex hull of the brows and eyes (points 17-26, 36-47: AU1, 2, 4, 5, 6, 7) and that
  of the lower nose, mouth and chin (points 31-35, 48-67, 5-11: AU9-28), each dilated by ``margin`` of the
  inter-ocular distance, because skin around a moving part moves with it;
* **face**: the convex hull of the jaw line and the brows raised by a third of the brow-to-chin height (the
  forehead), the same head outline :func:`facskit.models.tcae_head.mean_face_ellipse` gives;
* **rest of face**: face minus mobile parts; **outside**: everything else (hair, neck, background).

A field's share of a region is the sum of its displacement magnitudes there over the sum everywhere; a share
divided by the region's share of the area is its concentration (1: spread evenly; above 1: concentrated
there). A field that is zero in a pair gets NaN shares for that pair (it moved nothing anywhere).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["REGIONS", "field_shares", "face_regions"]

REGIONS = ("mobile", "rest of face", "outside")

_BROWS_EYES = (*range(17, 27), *range(36, 48))
_MOUTH_CHIN = (*range(31, 36), *range(48, 68), *range(5, 12))


def _hull_mask(points: np.ndarray, size: int, margin_px: float) -> np.ndarray:
    """Filled convex hull of ``points (K, 2)`` (pixels), grown by ``margin_px``, as a ``(S, S)`` bool mask."""
    mask = np.zeros((size, size), np.uint8)
    hull = cv2.convexHull(np.round(points * 16).astype(np.int32))  # 4 fractional bits
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    radius = int(round(margin_px))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, kernel)
    return mask.astype(bool)


def face_regions(landmarks: np.ndarray, size: int, margin: float = 0.15) -> np.ndarray:
    """``landmarks (N, 68, 2)`` in pixels of an ``size x size`` image -> ``(N, 3, S, S)`` bool masks of
    :data:`REGIONS` (disjoint, covering the image). ``margin`` is the mobile parts' dilation as a fraction of
    the inter-ocular distance (outer eye corners 36 and 45)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (N, 68, 2), got {landmarks.shape}")
    out = np.zeros((len(landmarks), len(REGIONS), size, size), bool)
    for n, points in enumerate(landmarks):
        ocular = float(np.linalg.norm(points[45] - points[36]))
        mobile = _hull_mask(points[list(_BROWS_EYES)], size, margin * ocular) | _hull_mask(
            points[list(_MOUTH_CHIN)], size, margin * ocular
        )
        brows_y, chin_y = points[17:27, 1].min(), points[8, 1]
        forehead = points[17:27] - [0.0, (chin_y - brows_y) / 3.0]
        face = _hull_mask(np.concatenate([points[0:17], forehead]), size, 0.0) | mobile
        out[n, 0] = mobile
        out[n, 1] = face & ~mobile
        out[n, 2] = ~face
    return out


def field_shares(magnitude: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair shares of a field and of the area in each region.

    Args:
        magnitude: ``(N, S, S)`` displacement magnitudes (any unit).
        regions: ``(N, R, S, S)`` bool masks from :func:`face_regions`.
    Returns:
        ``(field share (N, R), area share (N, R))``; a pair whose field is zero everywhere has NaN field
        shares.
    """
    magnitude = np.abs(np.asarray(magnitude, dtype=np.float64))
    inside = (magnitude[:, None] * regions).sum(axis=(2, 3))  # (N, R)
    total = magnitude.sum(axis=(1, 2))[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / total, np.nan)
    area = regions.mean(axis=(2, 3))
    return share, area
