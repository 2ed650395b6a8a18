"""The canonical canvas: the frontal, upright frame in face units where every feature is drawn once.

Why a frame of its own: features are drawn from the AU-displaced landmarks without thinking about head
pose, and posing (:mod:`facskit.synth.posing`) then moves the whole textured height field at once, so
shading, foreshortening and the projected landmarks all come from one geometry. :class:`Canvas` is the one
place where face units become canvas pixels and cv2's fixed-point coordinates (``SHIFT`` sub-pixel bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facskit.synth.appearance import SCALE

# Canonical canvas extent in face units (x from -X to +X, y from Y_TOP to Y_BOTTOM).
CANVAS_X = 1.75
CANVAS_Y_TOP = -1.75
CANVAS_Y_BOTTOM = 2.3
# Canonical canvas resolution relative to the output at pose scale 1 (a little finer, as poses shrink it).
CANVAS_SCALE = 1.1


@dataclass(frozen=True, eq=False)
class Canvas:
    """The canvas at ``ppu`` pixels per face unit: its size and the face-unit coordinates of its pixels."""

    ppu: float
    h: int
    w: int
    xs: np.ndarray  # float32 (h, w): x of each pixel centre in face units
    ys: np.ndarray  # float32 (h, w): y of each pixel centre in face units

    @classmethod
    def at(cls, ppu: float) -> Canvas:
        """The canvas covering the fixed face-unit extent at ``ppu`` pixels per face unit."""
        w = int(np.ceil(2 * CANVAS_X * ppu))
        h = int(np.ceil((CANVAS_Y_BOTTOM - CANVAS_Y_TOP) * ppu))
        xs = (np.arange(w, dtype=np.float32) / ppu - CANVAS_X)[None, :].repeat(h, 0)
        ys = (np.arange(h, dtype=np.float32) / ppu + CANVAS_Y_TOP)[:, None].repeat(w, 1)
        return cls(ppu, h, w, xs, ys)

    def blank(self) -> np.ndarray:
        """An empty uint8 (h, w) layer to draw a mask into."""
        return np.zeros((self.h, self.w), np.uint8)

    def to_px(self, points: np.ndarray) -> np.ndarray:
        """Face units -> canvas pixels (float64), for points of any leading shape."""
        return (np.asarray(points, np.float64) - np.array([-CANVAS_X, CANVAS_Y_TOP])) * self.ppu

    def poly(self, points: np.ndarray) -> list[np.ndarray]:
        """One polygon or polyline in fixed-point pixels, as ``cv2.fillPoly`` / ``cv2.polylines`` take it."""
        return [np.round(self.to_px(points) * SCALE).astype(np.int32)]

    def fixed_point(self, point: np.ndarray) -> tuple[int, ...]:
        """One point in fixed-point pixels: the centre of a ``cv2.circle`` or ``cv2.ellipse``."""
        return tuple(np.round(self.to_px(point) * SCALE).astype(int))

    def fixed_length(self, length: float) -> int:
        """A length in face units as fixed-point pixels: a radius or an ellipse axis."""
        return int(length * self.ppu * SCALE)
