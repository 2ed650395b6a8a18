"""Posing: the lit canonical head turned in 3D and projected into the output image, with its landmarks.

Head pose is a per-pixel 3D rotation of the textured height field about ``ROTATION_CENTRE``. Each output
pixel is mapped back to the canonical point that lands on it (inverse mapping, solved by fixed-point
iteration because the point's height depends on where it is) and sampled with ``cv2.remap``; the
landmarks go forward through the same rotation at their own heights, so pixels and ground truth agree.
Units: face units in the canonical frame, output pixels in the image.
"""

from __future__ import annotations

import cv2
import numpy as np

from facskit.synth.canvas import CANVAS_X, CANVAS_Y_TOP
from facskit.synth.face_model import ROTATION_CENTRE

# Inter-ocular distance as a fraction of the output image side at pose scale 1.
IOD_FRACTION = 0.27
# Eye midpoint position in the output image (fractions of the side) before translation.
EYE_CENTRE_FRACTION = (0.5, 0.42)
# Fixed-point steps of the inverse mapping (damped by half each step; enough for the smoothed heights).
INVERSE_MAP_STEPS = 6


def warp_head(
    colour: np.ndarray,
    alpha: np.ndarray,
    z_geo: np.ndarray,
    rotation: np.ndarray,
    origin: np.ndarray,
    ppu: float,
    ppu_out: float,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The posed head's colour (size, size, 3) and coverage (size, size) in the output image.

    ``colour``, ``alpha`` and the smoothed height field ``z_geo`` are canonical canvases at ``ppu`` pixels
    per face unit; ``origin`` is where the eye midpoint lands (output pixels) and ``ppu_out`` the output's
    pixels per face unit.
    """
    mx, my = _canonical_sources(z_geo, rotation, origin, ppu, ppu_out, size)
    head = cv2.remap(colour, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    head_a = cv2.remap(alpha, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return head, head_a


def _canonical_sources(
    z_geo: np.ndarray, rotation: np.ndarray, origin: np.ndarray, ppu: float, ppu_out: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """For every output pixel, the canonical canvas pixel (x map, y map, float32) that lands on it.

    Output pixel -> face units u; solve u = A (q - c) + b (z(q) - cz) + c for the canonical point q, where
    A is the rotation's 2x2 image-plane block, b its depth column and c the rotation centre.
    """
    gx, gy = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    ux = (gx - origin[0]) / ppu_out
    uy = (gy - origin[1]) / ppu_out
    a_inv = np.linalg.inv(rotation[:2, :2])
    b = rotation[:2, 2]
    c = ROTATION_CENTRE
    qx, qy = ux.copy(), uy.copy()
    zq = np.zeros_like(ux)
    for _ in range(INVERSE_MAP_STEPS):
        rx = ux - c[0] - b[0] * (zq - c[2])
        ry = uy - c[1] - b[1] * (zq - c[2])
        nqx = a_inv[0, 0] * rx + a_inv[0, 1] * ry + c[0]
        nqy = a_inv[1, 0] * rx + a_inv[1, 1] * ry + c[1]
        qx, qy = 0.5 * qx + 0.5 * nqx, 0.5 * qy + 0.5 * nqy
        mx = ((qx + CANVAS_X) * ppu).astype(np.float32)
        my = ((qy - CANVAS_Y_TOP) * ppu).astype(np.float32)
        zq = cv2.remap(z_geo, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return mx, my


def project_landmarks(
    shape: np.ndarray, z_geo: np.ndarray, rotation: np.ndarray, origin: np.ndarray, ppu: float, ppu_out: float
) -> np.ndarray:
    """The 68 landmarks in output pixels, float32 (68, 2): each at its height on the same height field,
    rotated and projected like the pixels of :func:`warp_head`."""
    lx = ((shape[:, 0] + CANVAS_X) * ppu).astype(np.float32)[None]
    ly = ((shape[:, 1] - CANVAS_Y_TOP) * ppu).astype(np.float32)[None]
    lz = cv2.remap(z_geo, lx, ly, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]
    p3 = np.c_[shape, lz]
    c = ROTATION_CENTRE
    projected = (p3 - c) @ rotation.T + c
    return (origin + projected[:, :2] * ppu_out).astype(np.float32)
