"""The face's height field: how far each canonical point stands out towards the camera.

One height field serves three purposes, which is why it lives apart from the drawing: shading takes its
normals, posing rotates it (so the head foreshortens), and the posed landmarks are read off it (so the
ground truth follows the same geometry as the pixels). Units: face units (inter-ocular distance = 1).
"""

from __future__ import annotations

import numpy as np

from facskit.aus import MAX_INTENSITY


def gauss(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    """An axis-aligned Gaussian bump of height 1 at ``(cx, cy)`` with widths ``sx, sy``, at ``xs, ys``.

    ``xs, ys`` are either a grid (2-D, as :class:`facskit.synth.canvas.Canvas` holds them) or any points.
    """
    # Python floats keep float32 grids float32 (NumPy 2 promotes with NumPy float64 scalars).
    if xs.ndim == 2:  # a grid: the Gaussian is separable, so two 1-D profiles and one outer product
        gx = np.exp(-0.5 * ((xs[0] - float(cx)) / float(sx)) ** 2)
        gy = np.exp(-0.5 * ((ys[:, 0] - float(cy)) / float(sy)) ** 2)
        return gy[:, None] * gx[None, :]
    dx = (xs - float(cx)) * (1.0 / float(sx))
    dy = (ys - float(cy)) * (1.0 / float(sy))
    return np.exp(-0.5 * (dx * dx + dy * dy))


def depth_map(xs: np.ndarray, ys: np.ndarray, shape: np.ndarray, aus: dict[int, float]) -> np.ndarray:
    """Height of the face towards the camera (face units) at canonical points ``xs, ys``.

    A head ellipsoid plus anatomical bumps placed on the landmarks: nose ridge and tip, brow ridge, eye
    sockets, cheekbones (raised by AU6/AU12), lips, chin (boss grows with AU17).
    """
    a6 = min(aus.get(6, 0.0), MAX_INTENSITY) / MAX_INTENSITY
    a12 = min(aus.get(12, 0.0), MAX_INTENSITY) / MAX_INTENSITY
    a17 = min(aus.get(17, 0.0), MAX_INTENSITY) / MAX_INTENSITY
    z = _head_and_nose(xs, ys, shape)
    for i in (31, 35):
        z += 0.045 * gauss(xs, ys, shape[i, 0], shape[i, 1] - 0.02, 0.05, 0.045)
    for eye, brow in ((slice(36, 42), slice(17, 22)), (slice(42, 48), slice(22, 27))):
        ex, ey = shape[eye].mean(0)
        z += -0.09 * gauss(xs, ys, ex, ey, 0.16, 0.1) + 0.05 * gauss(xs, ys, ex, ey, 0.085, 0.05)
        bx, by = shape[brow].mean(0)
        z += 0.045 * gauss(xs, ys, bx, by + 0.03, 0.2, 0.06)
        side = np.sign(ex)
        lift = 0.09 * a6 + 0.05 * a12
        z += (0.05 + 0.05 * a6 + 0.03 * a12) * gauss(xs, ys, side * 0.42, 0.4 - lift, 0.17, 0.14)
    mouth_y = float(shape[[51, 57], 1].mean())
    z += 0.07 * gauss(xs, ys, 0.0, mouth_y, 0.3, 0.2)
    z += 0.022 * gauss(xs, ys, 0.0, float(shape[[51, 62], 1].mean()), 0.18, 0.03)
    z += 0.028 * gauss(xs, ys, 0.0, float(shape[[57, 66], 1].mean()), 0.17, 0.035)
    chin_y = float(shape[8, 1])
    z += -(0.025 + 0.02 * a17) * gauss(xs, ys, 0.0, float(shape[57, 1]) + 0.07, 0.15, 0.04)
    z += (0.05 + 0.04 * a17) * gauss(xs, ys, 0.0, chin_y - 0.15 + 0.03 * a17, 0.15, 0.1)
    return z.astype(np.float32)


def _head_and_nose(xs: np.ndarray, ys: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """The base of the height field, float32: the head ellipsoid with the nose ridge profile on it.

    The nose follows the landmarks' nose line (27-30), rising from the bridge to the tip and falling back
    to the base; its profile is interpolated once per row when ``ys`` is a grid.
    """
    half_width = float(shape[16, 0] - shape[0, 0]) / 2
    ax, ay, cy = half_width * 1.04, 1.3, 0.2
    r2 = (xs / ax) ** 2 + ((ys - cy) / ay) ** 2
    z = 0.78 * np.sqrt(np.clip(1 - r2, 0.0, None)) - 0.55
    top, tip, base = float(shape[27, 1]), float(shape[30, 1]), float(shape[33, 1])
    rows = ys[:, :1] if ys.ndim == 2 else ys  # profiles along y: interpolate once per row
    height = np.interp(
        rows, [top - 0.08, top, tip - 0.12, tip, base, base + 0.05], [0, 0.05, 0.15, 0.24, 0.07, 0.0]
    )
    width = np.interp(rows, [top, tip, base], [0.065, 0.085, 0.11])
    nose_x = np.interp(rows, shape[27:31, 1], shape[27:31, 0])
    return (z + (height * np.exp(-(((xs - nose_x) / width) ** 2) / 2))).astype(np.float32)
