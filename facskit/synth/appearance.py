"""AU appearance cues as soft dark/light line layers: wrinkles, furrows, crow's feet, the mouth interior.

FACS codes many AUs by appearance changes as much as by movement (Ekman et al. 2002): AU1/AU2 raise
horizontal forehead wrinkles, AU4 vertical glabellar furrows, AU6 crow's feet and a lower-lid bag, AU9 nose
bridge wrinkles, AU6/9/10/12 deepen the nasolabial furrow, AU14 dimples, AU15 marionette lines, AU17 a chin
boss and mentolabial furrow, AU23 vertical lip lines. Each cue's opacity is intensity / 5, so the label is
visible in texture as well as in the landmarks. Shared by the parametric renderer and the texture mode:
geometry comes in face units (inter-ocular distance = 1) and ``to_px`` maps it to the target image.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

ToPx = Callable[[np.ndarray], np.ndarray]

SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn with 1/16 pixel precision
SCALE = 1 << SHIFT


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 10) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _mirror(points: np.ndarray) -> np.ndarray:
    return points * np.array([-1.0, 1.0])


def draw_polyline(layer: np.ndarray, points_px: np.ndarray, value: float, thickness: int) -> None:
    """Anti-aliased polyline of opacity ``value`` (0..1) on a uint8 layer; overlaps keep the max."""
    if value <= 0.01:
        return
    stroke = np.zeros_like(layer)
    pts = np.round(points_px * SCALE).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(stroke, [pts], False, int(round(255 * min(value, 1.0))), thickness, cv2.LINE_AA, SHIFT)
    np.maximum(layer, stroke, out=layer)


def _face_lines(
    shape: np.ndarray, aus: dict[int, float], age_lines: float
) -> list[tuple[np.ndarray, float, float]]:
    """All cue strokes as (points in face units, opacity, width factor); the face is assumed upright."""
    a = {
        code: min(max(float(aus.get(code, 0.0)), 0.0), 5.0) / 5.0
        for code in (1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23)
    }
    strokes: list[tuple[np.ndarray, float, float]] = []
    brow_top = float(min(shape[17:27, 1].min(), shape[19, 1], shape[24, 1]))
    # Forehead: medial part from AU1, lateral parts from AU2, faint permanent lines with age.
    for k in range(3):
        y0 = brow_top - 0.13 - 0.085 * k
        xs = np.linspace(-0.24, 0.24, 7)
        strokes.append((np.c_[xs, y0 - 0.025 * np.cos(xs * 3)], 0.85 * a[1] + 0.2 * age_lines, 1.0))
        for side in (-1.0, 1.0):
            xl = side * np.linspace(0.18, 0.62, 7)
            strokes.append((np.c_[xl, y0 + 0.06 * (xl / 0.62) ** 2], 0.85 * a[2] + 0.2 * age_lines, 1.0))
    # Glabella (AU4): vertical furrows between the brows and a horizontal procerus line at the nose root.
    inner_y = float(shape[[21, 22], 1].mean())
    for side in (-1.0, 1.0):
        x = float(shape[22 if side > 0 else 21, 0]) * 0.45
        strokes.append((np.array([[x + side * 0.01, inner_y - 0.1], [x, inner_y + 0.06]]), a[4], 1.2))
    strokes.append(
        (np.array([[-0.06, shape[27, 1] - 0.01], [0.06, shape[27, 1] - 0.01]]), 0.7 * a[4] + 0.5 * a[9], 1.0)
    )
    # Nose bridge wrinkles (AU9).
    for k in range(3):
        y = shape[27, 1] + 0.03 + 0.04 * k
        strokes.append((np.array([[-0.08, y + 0.01], [0.0, y - 0.005], [0.08, y + 0.01]]), a[9], 0.9))
    nasolabial = min(
        0.85, 0.25 * age_lines + 0.4 * a[6] + 0.6 * a[9] + 0.75 * a[10] + 0.7 * a[12] + 0.2 * a[20]
    )
    for side, (nose_i, corner_i, eye_i, lower_lid) in (
        (-1.0, (31, 48, 36, (41, 40))),
        (1.0, (35, 54, 45, (46, 47))),
    ):
        m = np.array([side * -1.0, 1.0])  # offsets below are written for the image-left side
        nose, corner, eye = shape[nose_i], shape[corner_i], shape[eye_i]
        p0 = nose + np.array([-0.03, -0.04]) * m
        p2 = corner + np.array([-0.06, 0.07]) * m
        p1 = (p0 + p2) / 2 + np.array([-0.06, 0.0]) * m
        strokes.append((_bezier(p0, p1, p2), nasolabial, 1.3))
        # Crow's feet (AU6) radiating from the outer eye corner.
        for angle in (-28.0, 0.0, 26.0):
            d = np.array([np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))]) * np.array([-1.0, 1.0]) * m
            start = eye + np.array([-0.04, 0.0]) * m
            strokes.append((np.array([start, start + 0.1 * d]), a[6], 0.9))
        # Lower-lid bag (AU6, AU7).
        lid = shape[list(lower_lid)]
        bag = np.vstack([eye, lid, shape[39 if side < 0 else 42]]) + np.array([0.0, 0.055])
        strokes.append((bag, 0.6 * a[6] + 0.5 * a[7], 1.0))
        # Dimple (AU14), marionette line (AU15), stretch line (AU20).
        strokes.append(
            (
                np.array([corner + np.array([-0.045, -0.035]) * m, corner + np.array([-0.04, 0.04]) * m]),
                a[14],
                1.3,
            )
        )
        strokes.append(
            (
                np.array([corner + np.array([-0.01, 0.03]) * m, corner + np.array([-0.035, 0.17]) * m]),
                0.8 * a[15],
                1.2,
            )
        )
        strokes.append(
            (
                np.array([corner + np.array([-0.035, 0.0]) * m, corner + np.array([-0.12, 0.02]) * m]),
                0.6 * a[20],
                1.0,
            )
        )
    # Mentolabial furrow (AU17) and vertical lip lines (AU23).
    y_mf = float(shape[57, 1] + 0.06 - 0.02 * a[17])
    strokes.append(
        (np.array([[-0.14, y_mf + 0.02], [0.0, y_mf], [0.14, y_mf + 0.02]]), 0.25 * age_lines + a[17], 1.4)
    )
    for x in (-0.12, -0.06, 0.06, 0.12):
        top = np.interp(x, shape[48:55, 0], shape[48:55, 1])
        strokes.append((np.array([[x, top - 0.035], [x * 1.05, top + 0.015]]), 0.55 * a[23], 0.8))
    return strokes


def au_appearance_layers(
    shape_px_size: tuple[int, int],
    shape_units: np.ndarray,
    to_px: ToPx,
    px_per_unit: float,
    aus: dict[int, float],
    age_lines: float = 0.0,
    chin_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Darkening and highlight layers, float32 (H, W) in 0..1, for a face of ``shape_units`` (68, 2).

    ``to_px`` maps face units to the target image's pixels (so a real, posed face works too) and
    ``px_per_unit`` is the inter-ocular distance in pixels there (line widths scale with it). A wrinkle is a
    dark groove with a highlight just below it, which reads as relief under frontal light.
    """
    h, w = shape_px_size
    dark = np.zeros((h, w), np.uint8)
    light = np.zeros((h, w), np.uint8)
    base = max(1, int(round(0.011 * px_per_unit)))
    for points, value, width in _face_lines(shape_units, aus, age_lines):
        if value <= 0.01:
            continue
        thickness = max(1, int(round(base * width)))
        draw_polyline(dark, to_px(points), value, thickness)
        draw_polyline(light, to_px(points + np.array([0.0, 0.018])), 0.6 * value, thickness)
    a17 = min(max(float(aus.get(17, 0.0)), 0.0), 5.0) / 5.0
    if a17 > 0.05:
        # Chin boss: the mentalis wrinkles the chin skin into an orange-peel texture.
        rng = np.random.default_rng(chin_seed)
        centre = np.array([0.0, (shape_units[57, 1] + shape_units[8, 1]) / 2 + 0.03])
        dots = centre + rng.normal(0, 1, (40, 2)) * np.array([0.09, 0.05])
        for dot in to_px(dots):
            cv2.circle(
                dark,
                tuple(np.round(dot * SCALE).astype(int)),
                max(1, int(0.012 * px_per_unit * SCALE)),
                int(160 * a17),
                -1,
                cv2.LINE_AA,
                SHIFT,
            )
    sigma = max(0.5, 0.008 * px_per_unit)
    dark_f = cv2.GaussianBlur(dark.astype(np.float32) / 255.0, (0, 0), sigma)
    light_f = cv2.GaussianBlur(light.astype(np.float32) / 255.0, (0, 0), sigma)
    return dark_f, light_f


def apply_layers(
    image: np.ndarray, dark: np.ndarray, light: np.ndarray, strength: float = 0.45
) -> np.ndarray:
    """Multiply a float RGB image (0..1) by the darkening layer and lift it by the highlight layer."""
    out = image * (1.0 - strength * dark[..., None]) + (0.25 * strength) * light[..., None] * (1.0 - image)
    return out


def draw_mouth_interior(
    image: np.ndarray, inner_px: np.ndarray, px_per_unit: float, teeth_rgb: tuple[float, float, float]
) -> np.ndarray:
    """Paint the open mouth (dark cavity, upper and lower teeth) inside the inner-lip polygon (8, 2) pixels.

    ``image`` is float RGB 0..1; returns the new image. Upper teeth hang from the upper inner lip (60-64),
    lower teeth show only where the opening is tall (jaw drop), as in real faces.
    """
    opening = float(np.max(inner_px[[7, 6, 5], 1] - inner_px[[1, 2, 3], 1]))
    if opening < 0.6:
        return image
    # Work on the mouth's bounding box only.
    pad = 3
    x0, y0 = np.floor(inner_px.min(0)).astype(int) - pad
    x1, y1 = np.ceil(inner_px.max(0)).astype(int) + pad
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0] + int(0.08 * px_per_unit))
    y1 = min(y1, image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return image
    out = image.copy()
    out[y0:y1, x0:x1] = _mouth_roi(
        image[y0:y1, x0:x1], inner_px - np.array([x0, y0]), px_per_unit, teeth_rgb, opening
    )
    return out


def _mouth_roi(
    image: np.ndarray,
    inner_px: np.ndarray,
    px_per_unit: float,
    teeth_rgb: tuple[float, float, float],
    opening: float,
) -> np.ndarray:
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(inner_px * SCALE).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
    cavity = np.zeros((h, w, 3), np.float32)
    cavity[:] = (0.16, 0.06, 0.06)
    teeth = np.zeros((h, w), np.uint8)
    upper = inner_px[[0, 1, 2, 3, 4]]
    tooth_h = 0.075 * px_per_unit
    poly = np.vstack([upper, upper[::-1] + np.array([0.0, tooth_h])])
    cv2.fillPoly(teeth, [np.round(poly * SCALE).astype(np.int32)], 230, cv2.LINE_AA, SHIFT)
    if opening > 0.12 * px_per_unit:
        lower = inner_px[[4, 5, 6, 7, 0]]
        poly = np.vstack([lower, lower[::-1] - np.array([0.0, 0.045 * px_per_unit])])
        cv2.fillPoly(teeth, [np.round(poly * SCALE).astype(np.int32)], 170, cv2.LINE_AA, SHIFT)
    t = teeth.astype(np.float32)[..., None] / 255.0
    # Gaps between teeth: faint vertical lines.
    gaps = np.zeros((h, w), np.uint8)
    cx = float(inner_px[[2, 6], 0].mean())
    top = float(inner_px[[1, 2, 3], 1].min())
    for k in range(-3, 4):
        x = cx + k * 0.05 * px_per_unit
        draw_polyline(gaps, np.array([[x, top], [x, top + tooth_h]]), 0.35, 1)
    teeth_colour = np.array(teeth_rgb, np.float32) / 255.0
    inside = cavity * (1 - t) + teeth_colour * t * (1 - 0.5 * gaps[..., None] / 255.0)
    # Teeth recede into shadow at the corners.
    m = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.5, 0.006 * px_per_unit))[..., None]
    return image * (1 - m) + inside * m
