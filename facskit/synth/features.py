"""The face's features painted on its albedo in the canonical frame: skin, eyes, lids, brows, lips, hair.

Every function draws one feature from the AU-displaced 68 landmarks (``shape``, face units, on a
:class:`~facskit.synth.canvas.Canvas`) and returns the new albedo, float32 (h, w, 3) 0..1.
``FaceRenderer.render_canonical`` calls them in painter's order (a later feature covers an earlier one),
so the order of the calls, not only the functions, makes the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facskit.synth.appearance import SHIFT, draw_mouth_interior
from facskit.synth.canvas import Canvas
from facskit.synth.depth import gauss
from facskit.synth.face_model import Identity

TEETH_RGB = (236.0, 230.0, 214.0)
EYES = (slice(36, 42), slice(42, 48))  # landmark rows of the right and left eye (image left first)
BROWS = ((17, 18, 19, 20, 21), (26, 25, 24, 23, 22))  # each from its outer end to its inner end


def rgb01(colour: tuple[float, float, float]) -> np.ndarray:
    """An identity's RGB 0..255 colour as float32 0..1 (how albedo colours are mixed)."""
    return np.array(colour, np.float32) / 255.0


def lash_width(ppu: float) -> int:
    """Stroke width of the lash line in canvas pixels; the other thin lines are sized from it."""
    return max(1, int(round(0.026 * ppu)))


@dataclass(frozen=True, eq=False)
class HeadMasks:
    """Where the head's parts cover the canvas: float32 (h, w) 0..1, except ``face`` (uint8, as drawn)."""

    face: np.ndarray  # the face outline's polygon, 0 or 255 (anti-aliased)
    skin: np.ndarray  # the face, plus the crown of a bald head
    ears: np.ndarray
    hair: np.ndarray  # blurred, so the hairline is soft


def head_masks(canvas: Canvas, shape: np.ndarray, identity: Identity) -> HeadMasks:
    """The face outline (jaw contour closed over the forehead by an elliptic arc), ears, hair and skin."""
    half_width = (shape[16, 0] - shape[0, 0]) / 2
    t = np.linspace(0.0, np.pi, 24)
    arc = np.c_[half_width * 1.02 * np.cos(t), shape[16, 1] - (shape[16, 1] + 1.0) * np.sin(t) ** 0.8]
    outline = np.vstack([shape[0:17], arc[1:-1]])
    face_mask = canvas.blank()
    cv2.fillPoly(face_mask, canvas.poly(outline), 255, cv2.LINE_AA, SHIFT)
    ears = _ears_mask(canvas, half_width)
    hair, bald_top = _hair_and_crown(canvas, identity, half_width)
    hair_alpha = cv2.GaussianBlur(hair.astype(np.float32), (0, 0), 0.012 * canvas.ppu + 0.5)
    face_a = face_mask.astype(np.float32) / 255.0
    ear_a = ears.astype(np.float32) / 255.0
    skin_a = np.maximum(face_a, bald_top.astype(np.float32))
    return HeadMasks(face=face_mask, skin=skin_a, ears=ear_a, hair=hair_alpha)


def _ears_mask(canvas: Canvas, half_width: float) -> np.ndarray:
    """Two slightly tilted ellipses at the sides of the head, uint8 (h, w)."""
    ears = canvas.blank()
    for side in (-1.0, 1.0):
        centre = canvas.fixed_point(np.array([side * (half_width + 0.02), 0.2]))
        axes = (canvas.fixed_length(0.085), canvas.fixed_length(0.2))
        cv2.ellipse(ears, centre, axes, side * 8, 0, 360, 255, -1, cv2.LINE_AA, SHIFT)
    return ears


def _hair_and_crown(canvas: Canvas, identity: Identity, half_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Hair and the bald crown, bool (h, w) each.

    Hair fills an enlarged head ellipse (larger for fuller styles) outside the face window under the
    hairline; style 3 adds long hair down the sides, style 0 is bald, and its crown is then skin.
    """
    xs, ys = canvas.xs, canvas.ys
    grow = (0.0, 0.05, 0.12, 0.2)[identity.hair_style]
    head = ((xs / (half_width + 0.1 + grow)) ** 2 + ((ys + 0.05) / (1.12 + grow)) ** 2) < 1
    window_h = 0.5 - identity.hairline
    window = ((xs / (half_width * 0.93)) ** 2 + ((ys - 0.5) / window_h) ** 2 < 1) | (ys > 0.5)
    hair = head & ~window & (ys < 0.35)
    if identity.hair_style == 3:
        hair |= (np.abs(xs) > half_width * 0.85) & (np.abs(xs) < half_width + 0.3) & (ys < 1.7) & (ys > -0.3)
    if identity.hair_style == 0:
        hair[:] = False
    bald_top = (identity.hair_style == 0) & head & ~window
    return hair, bald_top


def skin_albedo(
    canvas: Canvas, shape: np.ndarray, identity: Identity, skin_tex: np.ndarray, face_mask: np.ndarray
) -> np.ndarray:
    """Textured skin with redder cheeks and nose tip, darkened under a beard: the albedo drawn over next."""
    xs, ys = canvas.xs, canvas.ys
    albedo = np.empty((canvas.h, canvas.w, 3), np.float32)
    albedo[:] = rgb01(identity.skin_rgb)
    albedo *= skin_tex[..., None]
    red = 0.06 * (gauss(xs, ys, -0.4, 0.42, 0.13, 0.1) + gauss(xs, ys, 0.4, 0.42, 0.13, 0.1))
    red += 0.04 * gauss(xs, ys, 0.0, float(shape[30, 1]), 0.06, 0.05)
    albedo *= 1 - red[..., None] * np.array([0.0, 0.5, 0.45], np.float32)
    if identity.beard > 0:
        beard = ((ys > shape[33, 1] + 0.04) & face_mask.astype(bool)).astype(np.float32)
        beard = cv2.GaussianBlur(beard, (0, 0), 0.05 * canvas.ppu) * (0.8 + 0.2 * skin_tex)
        albedo *= 1 - 0.45 * identity.beard * beard[..., None]
    return albedo


def draw_eyes(albedo: np.ndarray, canvas: Canvas, shape: np.ndarray, identity: Identity) -> np.ndarray:
    """Sclera, iris, pupil and glint, clipped by the lid polygon of each eye."""
    eye_layer = canvas.blank()
    for eye in EYES:
        cv2.fillPoly(eye_layer, canvas.poly(shape[eye]), 255, cv2.LINE_AA, SHIFT)
    eye_a = eye_layer.astype(np.float32)[..., None] / 255.0
    eye_rgb = np.empty((canvas.h, canvas.w, 3), np.float32)
    eye_rgb[:] = (0.86, 0.84, 0.8)
    iris_rgb = tuple(float(v) / 255.0 for v in identity.iris_rgb)
    for eye in EYES:
        pts = shape[eye]
        centre = np.array([pts[:, 0].mean(), pts[[1, 2, 4, 5], 1].mean() - 0.003])
        c = canvas.fixed_point(centre)
        for radius, rgb in ((0.068, (0.12, 0.1, 0.09)), (0.058, iris_rgb), (0.026, (0.03, 0.03, 0.03))):
            cv2.circle(eye_rgb, c, canvas.fixed_length(radius), rgb, -1, cv2.LINE_AA, SHIFT)
        g = canvas.fixed_point(centre + np.array([0.02, -0.018]))
        cv2.circle(eye_rgb, g, canvas.fixed_length(0.012), (1.0, 1.0, 1.0), -1, cv2.LINE_AA, SHIFT)
    return albedo * (1 - eye_a) + eye_rgb * eye_a


def draw_lids_and_nostrils(
    albedo: np.ndarray, canvas: Canvas, shape: np.ndarray, identity: Identity
) -> np.ndarray:
    """Lash lines and lower lids (sharp), lid creases, socket shadows and alar creases (soft), nostrils.

    The sharp lines take the lash colour (dark hair colour); the soft ones only darken the skin.
    """
    lines, soft = canvas.blank(), canvas.blank()
    lash = lash_width(canvas.ppu)
    for eye in EYES:
        _draw_eye_surround(lines, soft, canvas, shape[eye], lash)
    for a_i, b_i, side in ((31, 32, -1.0), (35, 34, 1.0)):
        _draw_nostril(lines, soft, canvas, shape, (a_i, b_i, side), lash)
    soft_f = cv2.GaussianBlur(soft.astype(np.float32) / 255.0, (0, 0), 0.02 * canvas.ppu + 0.5)
    lines_f = cv2.GaussianBlur(lines.astype(np.float32) / 255.0, (0, 0), 0.004 * canvas.ppu + 0.4)
    albedo *= 1 - 0.35 * soft_f[..., None]
    lash_rgb = np.minimum(rgb01(identity.hair_rgb), 0.2) * 0.5
    return albedo * (1 - lines_f[..., None]) + lash_rgb * lines_f[..., None]


def _draw_eye_surround(
    lines: np.ndarray, soft: np.ndarray, canvas: Canvas, pts: np.ndarray, lash: int
) -> None:
    """One eye's lash line and lower lid on ``lines``; its lid crease and socket shadow on ``soft``."""
    cv2.polylines(lines, canvas.poly(pts[[0, 1, 2, 3]]), False, 235, lash, cv2.LINE_AA, SHIFT)
    cv2.polylines(lines, canvas.poly(pts[[3, 4, 5, 0]]), False, 110, max(1, lash // 2), cv2.LINE_AA, SHIFT)
    crease = pts[[0, 1, 2, 3]] + np.array([[0.0, -0.045], [0.0, -0.065], [0.0, -0.065], [0.0, -0.04]])
    cv2.polylines(soft, canvas.poly(crease), False, 120, max(1, lash), cv2.LINE_AA, SHIFT)
    ex, ey = pts.mean(0)
    centre = canvas.fixed_point(np.array([ex, ey - 0.04]))
    axes = (canvas.fixed_length(0.17), canvas.fixed_length(0.09))
    cv2.ellipse(soft, centre, axes, 0, 0, 360, 70, -1, cv2.LINE_AA, SHIFT)


def _draw_nostril(
    lines: np.ndarray,
    soft: np.ndarray,
    canvas: Canvas,
    shape: np.ndarray,
    which: tuple[int, int, float],
    lash: int,
) -> None:
    """One nostril on ``lines`` and its alar crease on ``soft``; ``which`` is (outer point, inner point,
    side: -1 image left, +1 image right) of the nose base."""
    a_i, b_i, side = which
    centre = shape[a_i] * 0.45 + shape[b_i] * 0.55 + np.array([0.0, -0.012])
    axes = (canvas.fixed_length(0.042), canvas.fixed_length(0.019))
    cv2.ellipse(lines, canvas.fixed_point(centre), axes, side * 15, 0, 360, 220, -1, cv2.LINE_AA, SHIFT)
    wing = shape[a_i] + np.array([[0.0, -0.08], [side * 0.035, -0.045], [side * 0.03, 0.0], [0.0, 0.02]])
    cv2.polylines(soft, canvas.poly(wing), False, 170, max(1, lash), cv2.LINE_AA, SHIFT)


def draw_brows(
    albedo: np.ndarray, canvas: Canvas, shape: np.ndarray, identity: Identity, hair_tex: np.ndarray
) -> np.ndarray:
    """Brows: a band along each brow's landmarks, tapered towards the outer end, in a dark hair colour."""
    brow = canvas.blank()
    thick = identity.brow_thickness
    for idx in BROWS:
        pts = shape[list(idx)]
        taper = np.array([0.45, 0.75, 0.9, 1.0, 1.0])[:, None] * thick
        band = np.vstack(
            [
                pts - np.c_[np.zeros(5), taper[:, 0] * 0.45],
                (pts + np.c_[np.zeros(5), taper[:, 0] * 0.55])[::-1],
            ]
        )
        cv2.fillPoly(brow, canvas.poly(band), 255, cv2.LINE_AA, SHIFT)
    brow_f = cv2.GaussianBlur(brow.astype(np.float32) / 255.0, (0, 0), 0.006 * canvas.ppu + 0.4) * 0.9
    brow_f *= np.clip(0.75 + 0.5 * (hair_tex - 1), 0.5, 1.0)
    brow_rgb = np.minimum(rgb01(identity.hair_rgb) * 0.8, rgb01(identity.skin_rgb) * 0.45)
    return albedo * (1 - brow_f[..., None]) + brow_rgb * brow_f[..., None]


def draw_lips(albedo: np.ndarray, canvas: Canvas, shape: np.ndarray, identity: Identity) -> np.ndarray:
    """The red of the lips (upper lip a little darker), the seam between them, then the mouth interior
    (teeth and darkness) where they part."""
    lip = canvas.blank()
    cv2.fillPoly(lip, canvas.poly(shape[48:60]), 255, cv2.LINE_AA, SHIFT)
    lip_f = cv2.GaussianBlur(lip.astype(np.float32) / 255.0, (0, 0), 0.006 * canvas.ppu + 0.5)[..., None]
    upper_dark = np.where(canvas.ys < float(shape[62, 1]), np.float32(0.88), np.float32(1.0))[..., None]
    albedo = albedo * (1 - lip_f) + (rgb01(identity.lip_rgb) * upper_dark) * lip_f
    seam = canvas.blank()
    seam_width = max(1, lash_width(canvas.ppu) // 2 + 1)
    cv2.polylines(
        seam, canvas.poly(shape[[48, 60, 61, 62, 63, 64, 54]]), False, 200, seam_width, cv2.LINE_AA, SHIFT
    )
    seam_f = cv2.GaussianBlur(seam.astype(np.float32) / 255.0, (0, 0), 0.5)[..., None]
    albedo = albedo * (1 - 0.6 * seam_f) + np.array([0.25, 0.08, 0.08], np.float32) * 0.6 * seam_f
    return draw_mouth_interior(albedo, canvas.to_px(shape[60:68]), canvas.ppu, TEETH_RGB)


def cover_with_hair(
    albedo: np.ndarray, masks: HeadMasks, identity: Identity, hair_tex: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The head's colour and coverage: ears under the skin, hair over the forehead and sides.

    Returns ``(albedo, alpha)``: float32 (h, w, 3) and (h, w), alpha 0 outside the head.
    """
    hair_col = rgb01(identity.hair_rgb) * np.clip(hair_tex, 0.6, 1.4)[..., None]
    albedo_ears = rgb01(identity.skin_rgb) * 0.9
    skin_a, ear_a, hair_alpha = masks.skin, masks.ears, masks.hair
    base = albedo * skin_a[..., None] + albedo_ears * (ear_a * (1 - skin_a))[..., None]
    albedo = base * (1 - hair_alpha[..., None]) + hair_col * hair_alpha[..., None]
    alpha = np.clip(np.maximum(np.maximum(skin_a, ear_a), hair_alpha), 0, 1)
    return albedo, alpha


def draw_glasses(colour: np.ndarray, canvas: Canvas, shape: np.ndarray, identity: Identity) -> np.ndarray:
    """Spectacle frames (two rims and a bridge) over the lit colour: they are drawn after shading, so
    they do not take the skin's shading; black or brown frames alternate between identities."""
    frame = canvas.blank()
    thickness = max(1, int(round(0.025 * canvas.ppu)))
    centres = []
    for eye in EYES:
        centre = shape[eye].mean(0) + np.array([0.0, 0.01])
        centres.append(centre)
        axes = (canvas.fixed_length(0.21), canvas.fixed_length(0.14))
        cv2.ellipse(frame, canvas.fixed_point(centre), axes, 0, 0, 360, 255, thickness, cv2.LINE_AA, SHIFT)
    bridge = np.array([centres[0] + np.array([0.2, -0.02]), centres[1] + np.array([-0.2, -0.02])])
    cv2.polylines(frame, canvas.poly(bridge), False, 255, thickness, cv2.LINE_AA, SHIFT)
    f = frame.astype(np.float32)[..., None] / 255.0
    rgb = (
        np.array([0.08, 0.07, 0.07], np.float32)
        if identity.identity_id % 2
        else np.array([0.35, 0.2, 0.1], np.float32)
    )
    return colour * (1 - f) + rgb * f
