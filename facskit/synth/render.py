"""Render a parametric face: albedo and a depth map drawn in a frontal canonical frame, lit, then posed.

Why a canonical frame: every feature (eyes, brows, lips, wrinkles) is drawn once, upright and frontal, from
the AU-displaced 68 landmarks; head pose is then a per-pixel 3D rotation of that textured height field
(inverse-mapped by fixed-point iteration and ``cv2.remap``), so shading, foreshortening and the projected
ground-truth landmarks all come from the same geometry. Units: face units (inter-ocular distance = 1) in
the canonical frame, pixels in the output, degrees for pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facskit.aus import MAX_INTENSITY
from facskit.synth.appearance import SCALE, SHIFT, apply_layers, au_appearance_layers, draw_mouth_interior
from facskit.synth.face_model import (
    ROTATION_CENTRE,
    Identity,
    expression_shape,
    identity_shape,
    rotation_matrix,
)

# Canonical canvas extent in face units (x from -X to +X, y from Y_TOP to Y_BOTTOM).
CANVAS_X = 1.75
CANVAS_Y_TOP = -1.75
CANVAS_Y_BOTTOM = 2.3
# Inter-ocular distance as a fraction of the output image side at pose scale 1.
IOD_FRACTION = 0.27
# Eye midpoint position in the output image (fractions of the side) before translation.
EYE_CENTRE_FRACTION = (0.5, 0.42)
TEETH_RGB = (236.0, 230.0, 214.0)
# Canonical canvas resolution relative to the output at pose scale 1 (a little finer, as poses shrink it).
CANVAS_SCALE = 1.1


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees plus placement: translation as a fraction of the image side, relative scale."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class Scene:
    """What stays fixed through one recording: background, light, camera. Colours RGB 0..255."""

    background_seed: int
    light_dir: tuple[
        float, float, float
    ]  # unit vector towards the light, camera frame (x right, y down, z to camera)
    ambient: float
    diffuse: float
    light_rgb: tuple[float, float, float]
    noise_sigma: float  # sensor noise, grey levels
    blur_sigma: float  # optical blur, pixels at 256
    clothes_rgb: tuple[float, float, float]


def sample_scene(rng: np.random.Generator) -> Scene:
    """Random lighting (direction within ~60 degrees of frontal), background, camera noise and blur."""
    azimuth = np.deg2rad(rng.uniform(-55, 55))
    elevation = np.deg2rad(rng.uniform(-10, 45))
    light = np.array(
        [np.sin(azimuth) * np.cos(elevation), -np.sin(elevation), np.cos(azimuth) * np.cos(elevation)]
    )
    tint = np.clip(np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.04, 3), 0.85, 1.1)
    return Scene(
        background_seed=int(rng.integers(2**31)),
        light_dir=tuple(float(v) for v in light / np.linalg.norm(light)),
        ambient=float(rng.uniform(0.4, 0.6)),
        diffuse=float(rng.uniform(0.45, 0.7)),
        light_rgb=tuple(float(v) for v in tint),
        noise_sigma=float(rng.uniform(0.5, 4.0)),
        blur_sigma=float(rng.uniform(0.0, 0.8)),
        clothes_rgb=tuple(float(v) for v in rng.uniform(20, 220, 3)),
    )


def background_image(scene: Scene, size: int) -> np.ndarray:
    """Cluttered room-like background, float32 (size, size, 3) 0..1: gradient, blurred shapes, a few edges."""
    rng = np.random.default_rng(scene.background_seed)
    c0, c1 = rng.uniform(0.15, 0.9, 3), rng.uniform(0.15, 0.9, 3)
    t = np.linspace(0, 1, size, dtype=np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None]) / (
        abs(np.cos(angle)) + abs(np.sin(angle))
    )
    img = (c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]).astype(np.float32)
    for _ in range(int(rng.integers(3, 10))):
        colour = tuple(float(v) for v in rng.uniform(0.05, 0.95, 3))
        kind = rng.integers(3)
        p = rng.uniform(0, size, 2).astype(int)
        if kind == 0:
            q = p + rng.uniform(size * 0.05, size * 0.5, 2).astype(int)
            cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, -1)
        elif kind == 1:
            cv2.circle(img, tuple(int(v) for v in p), int(rng.uniform(size * 0.03, size * 0.2)), colour, -1)
        else:
            q = rng.uniform(0, size, 2).astype(int)
            cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, int(rng.integers(1, 5)))
    texture = cv2.resize(rng.normal(0, 0.04, (size // 16, size // 16, 3)).astype(np.float32), (size, size))
    img = cv2.GaussianBlur(img + texture, (0, 0), rng.uniform(0.8, 3.0) * size / 256)
    return np.clip(img, 0, 1)


def _gauss(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
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
    z = (z + (height * np.exp(-(((xs - nose_x) / width) ** 2) / 2))).astype(np.float32)
    for i in (31, 35):
        z += 0.045 * _gauss(xs, ys, shape[i, 0], shape[i, 1] - 0.02, 0.05, 0.045)
    for eye, brow in ((slice(36, 42), slice(17, 22)), (slice(42, 48), slice(22, 27))):
        ex, ey = shape[eye].mean(0)
        z += -0.09 * _gauss(xs, ys, ex, ey, 0.16, 0.1) + 0.05 * _gauss(xs, ys, ex, ey, 0.085, 0.05)
        bx, by = shape[brow].mean(0)
        z += 0.045 * _gauss(xs, ys, bx, by + 0.03, 0.2, 0.06)
        side = np.sign(ex)
        lift = 0.09 * a6 + 0.05 * a12
        z += (0.05 + 0.05 * a6 + 0.03 * a12) * _gauss(xs, ys, side * 0.42, 0.4 - lift, 0.17, 0.14)
    mouth_y = float(shape[[51, 57], 1].mean())
    z += 0.07 * _gauss(xs, ys, 0.0, mouth_y, 0.3, 0.2)
    z += 0.022 * _gauss(xs, ys, 0.0, float(shape[[51, 62], 1].mean()), 0.18, 0.03)
    z += 0.028 * _gauss(xs, ys, 0.0, float(shape[[57, 66], 1].mean()), 0.17, 0.035)
    chin_y = float(shape[8, 1])
    z += -(0.025 + 0.02 * a17) * _gauss(xs, ys, 0.0, float(shape[57, 1]) + 0.07, 0.15, 0.04)
    z += (0.05 + 0.04 * a17) * _gauss(xs, ys, 0.0, chin_y - 0.15 + 0.03 * a17, 0.15, 0.1)
    return z.astype(np.float32)


def _pow18(x: np.ndarray) -> np.ndarray:
    """x ** 18 by squaring (a specular lobe), several times faster than a float power."""
    x2 = x * x
    x4 = x2 * x2
    x16 = x4 * x4
    x16 *= x16
    return x16 * x2


class FaceRenderer:
    """Renders an Identity under AU intensities and a Pose into an RGB image with its 68 landmarks.

    Stateless apart from caches keyed by identity (hair and skin noise), so frames of one identity share
    their fine texture and only expression, pose and sensor noise change between frames.
    """

    def __init__(self, size: int = 256) -> None:
        if not 64 <= size <= 1024:
            raise ValueError(f"image size must be 64..1024 pixels, got {size}")
        self.size = size
        self._texture_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._background_cache: dict[tuple[int, int], np.ndarray] = {}

    # -- canonical frame -------------------------------------------------------------------------------
    def _canvas(self, ppu: float) -> tuple[int, int, np.ndarray, np.ndarray]:
        w = int(np.ceil(2 * CANVAS_X * ppu))
        h = int(np.ceil((CANVAS_Y_BOTTOM - CANVAS_Y_TOP) * ppu))
        xs = (np.arange(w, dtype=np.float32) / ppu - CANVAS_X)[None, :].repeat(h, 0)
        ys = (np.arange(h, dtype=np.float32) / ppu + CANVAS_Y_TOP)[:, None].repeat(w, 1)
        return h, w, xs, ys

    def _textures(self, identity: Identity, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-identity fine texture (skin blotches, hair strands), float32 (h, w) around 1."""
        key = (identity.background_seed, w, h)
        if key not in self._texture_cache:
            rng = np.random.default_rng(identity.background_seed + 1)
            blotch = cv2.resize(
                rng.normal(0, 1, (12, 12)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
            )
            pores = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.7)
            skin = 1 + 0.035 * blotch + 0.02 * pores
            strands = rng.normal(0, 1, (h, w)).astype(np.float32)
            strands = cv2.GaussianBlur(strands, (0, 0), sigmaX=0.6, sigmaY=max(2.0, h / 60))
            hair = 1 + 0.5 * strands / (strands.std() + 1e-6) * 0.3
            self._texture_cache = {key: (skin.astype(np.float32), hair.astype(np.float32))}
        return self._texture_cache[key]

    def render_canonical(
        self,
        identity: Identity,
        shape: np.ndarray,
        aus: dict[int, float],
        ppu: float,
        scene: Scene,
        rotation: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lit colour (h, w, 3), alpha (h, w) and depth (h, w) of the head in the canonical frame."""
        h, w, xs, ys = self._canvas(ppu)

        def to_px(points: np.ndarray) -> np.ndarray:
            return (np.asarray(points, np.float64) - np.array([-CANVAS_X, CANVAS_Y_TOP])) * ppu

        def poly(points: np.ndarray) -> list[np.ndarray]:
            return [np.round(to_px(points) * SCALE).astype(np.int32)]

        skin_rgb = np.array(identity.skin_rgb, np.float32) / 255.0
        hair_rgb = np.array(identity.hair_rgb, np.float32) / 255.0
        lip_rgb = np.array(identity.lip_rgb, np.float32) / 255.0
        skin_tex, hair_tex = self._textures(identity, h, w)

        # Face outline: jaw contour closed over the forehead by an elliptic arc.
        half_width = (shape[16, 0] - shape[0, 0]) / 2
        t = np.linspace(0.0, np.pi, 24)
        arc = np.c_[half_width * 1.02 * np.cos(t), shape[16, 1] - (shape[16, 1] + 1.0) * np.sin(t) ** 0.8]
        outline = np.vstack([shape[0:17], arc[1:-1]])
        face_mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(face_mask, poly(outline), 255, cv2.LINE_AA, SHIFT)
        ears = np.zeros((h, w), np.uint8)
        for side in (-1.0, 1.0):
            centre = to_px(np.array([side * (half_width + 0.02), 0.2]))
            axes = (int(0.085 * ppu * SCALE), int(0.2 * ppu * SCALE))
            cv2.ellipse(
                ears,
                tuple(np.round(centre * SCALE).astype(int)),
                axes,
                side * 8,
                0,
                360,
                255,
                -1,
                cv2.LINE_AA,
                SHIFT,
            )
        # Hair: inside an enlarged head ellipse, outside the face window under the hairline.
        grow = (0.0, 0.05, 0.12, 0.2)[identity.hair_style]
        head = ((xs / (half_width + 0.1 + grow)) ** 2 + ((ys + 0.05) / (1.12 + grow)) ** 2) < 1
        window_h = 0.5 - identity.hairline
        window = ((xs / (half_width * 0.93)) ** 2 + ((ys - 0.5) / window_h) ** 2 < 1) | (ys > 0.5)
        hair = head & ~window & (ys < 0.35)
        if identity.hair_style == 3:
            hair |= (
                (np.abs(xs) > half_width * 0.85) & (np.abs(xs) < half_width + 0.3) & (ys < 1.7) & (ys > -0.3)
            )
        if identity.hair_style == 0:
            hair[:] = False
        hair_alpha = cv2.GaussianBlur(hair.astype(np.float32), (0, 0), 0.012 * ppu + 0.5)
        face_a = face_mask.astype(np.float32) / 255.0
        ear_a = ears.astype(np.float32) / 255.0
        bald_top = (identity.hair_style == 0) & head & ~window
        skin_a = np.maximum(face_a, bald_top.astype(np.float32))

        albedo = np.empty((h, w, 3), np.float32)
        albedo[:] = skin_rgb
        albedo *= skin_tex[..., None]
        # Cheek and nose redness; slightly darker, warmer ears.
        red = 0.06 * (_gauss(xs, ys, -0.4, 0.42, 0.13, 0.1) + _gauss(xs, ys, 0.4, 0.42, 0.13, 0.1))
        red += 0.04 * _gauss(xs, ys, 0.0, float(shape[30, 1]), 0.06, 0.05)
        albedo *= 1 - red[..., None] * np.array([0.0, 0.5, 0.45], np.float32)
        if identity.beard > 0:
            beard = ((ys > shape[33, 1] + 0.04) & face_mask.astype(bool)).astype(np.float32)
            beard *= np.clip((np.abs(xs) - 0.0) * 0 + 1, 0, 1)
            beard = cv2.GaussianBlur(beard, (0, 0), 0.05 * ppu) * (0.8 + 0.2 * skin_tex)
            albedo *= 1 - 0.45 * identity.beard * beard[..., None]

        # Eyes: sclera, iris, pupil, glint, clipped by the lid polygon; lash line, crease, lower lid.
        eye_layer = np.zeros((h, w), np.uint8)
        for eye in (slice(36, 42), slice(42, 48)):
            cv2.fillPoly(eye_layer, poly(shape[eye]), 255, cv2.LINE_AA, SHIFT)
        eye_a = eye_layer.astype(np.float32)[..., None] / 255.0
        eye_rgb = np.empty((h, w, 3), np.float32)
        eye_rgb[:] = (0.86, 0.84, 0.8)
        iris_rgb = tuple(float(v) / 255.0 for v in identity.iris_rgb)
        for eye in (slice(36, 42), slice(42, 48)):
            pts = shape[eye]
            centre = np.array([pts[:, 0].mean(), pts[[1, 2, 4, 5], 1].mean() - 0.003])
            c = tuple(np.round(to_px(centre) * SCALE).astype(int))
            cv2.circle(eye_rgb, c, int(0.068 * ppu * SCALE), (0.12, 0.1, 0.09), -1, cv2.LINE_AA, SHIFT)
            cv2.circle(eye_rgb, c, int(0.058 * ppu * SCALE), iris_rgb, -1, cv2.LINE_AA, SHIFT)
            cv2.circle(eye_rgb, c, int(0.026 * ppu * SCALE), (0.03, 0.03, 0.03), -1, cv2.LINE_AA, SHIFT)
            g = tuple(np.round(to_px(centre + np.array([0.02, -0.018])) * SCALE).astype(int))
            cv2.circle(eye_rgb, g, int(0.012 * ppu * SCALE), (1.0, 1.0, 1.0), -1, cv2.LINE_AA, SHIFT)
        albedo = albedo * (1 - eye_a) + eye_rgb * eye_a

        lines = np.zeros((h, w), np.uint8)
        soft = np.zeros((h, w), np.uint8)
        lash = max(1, int(round(0.026 * ppu)))
        for eye in (slice(36, 42), slice(42, 48)):
            pts = shape[eye]
            cv2.polylines(lines, poly(pts[[0, 1, 2, 3]]), False, 235, lash, cv2.LINE_AA, SHIFT)
            cv2.polylines(lines, poly(pts[[3, 4, 5, 0]]), False, 110, max(1, lash // 2), cv2.LINE_AA, SHIFT)
            crease = pts[[0, 1, 2, 3]] + np.array([[0.0, -0.045], [0.0, -0.065], [0.0, -0.065], [0.0, -0.04]])
            cv2.polylines(soft, poly(crease), False, 120, max(1, lash), cv2.LINE_AA, SHIFT)
            ex, ey = pts.mean(0)
            # Shadowed lid and socket around the eye.
            soft_ellipse = tuple(np.round(to_px(np.array([ex, ey - 0.04])) * SCALE).astype(int))
            cv2.ellipse(
                soft,
                soft_ellipse,
                (int(0.17 * ppu * SCALE), int(0.09 * ppu * SCALE)),
                0,
                0,
                360,
                70,
                -1,
                cv2.LINE_AA,
                SHIFT,
            )
        # Nostrils and alar creases.
        for a_i, b_i, side in ((31, 32, -1.0), (35, 34, 1.0)):
            centre = shape[a_i] * 0.45 + shape[b_i] * 0.55 + np.array([0.0, -0.012])
            c = tuple(np.round(to_px(centre) * SCALE).astype(int))
            cv2.ellipse(
                lines,
                c,
                (int(0.042 * ppu * SCALE), int(0.019 * ppu * SCALE)),
                side * 15,
                0,
                360,
                220,
                -1,
                cv2.LINE_AA,
                SHIFT,
            )
            wing = shape[a_i] + np.array(
                [[0.0, -0.08], [side * 0.035, -0.045], [side * 0.03, 0.0], [0.0, 0.02]]
            )
            cv2.polylines(soft, poly(wing), False, 170, max(1, lash), cv2.LINE_AA, SHIFT)
        soft_f = cv2.GaussianBlur(soft.astype(np.float32) / 255.0, (0, 0), 0.02 * ppu + 0.5)
        lines_f = cv2.GaussianBlur(lines.astype(np.float32) / 255.0, (0, 0), 0.004 * ppu + 0.4)
        albedo *= 1 - 0.35 * soft_f[..., None]
        lash_rgb = np.minimum(hair_rgb, 0.2) * 0.5
        albedo = albedo * (1 - lines_f[..., None]) + lash_rgb * lines_f[..., None]

        # Brows: tapered band filled with hair colour.
        brow = np.zeros((h, w), np.uint8)
        thick = identity.brow_thickness
        for idx in ((17, 18, 19, 20, 21), (26, 25, 24, 23, 22)):
            pts = shape[list(idx)]
            taper = np.array([0.45, 0.75, 0.9, 1.0, 1.0])[:, None] * thick
            band = np.vstack(
                [
                    pts - np.c_[np.zeros(5), taper[:, 0] * 0.45],
                    (pts + np.c_[np.zeros(5), taper[:, 0] * 0.55])[::-1],
                ]
            )
            cv2.fillPoly(brow, poly(band), 255, cv2.LINE_AA, SHIFT)
        brow_f = cv2.GaussianBlur(brow.astype(np.float32) / 255.0, (0, 0), 0.006 * ppu + 0.4) * 0.9
        brow_f *= np.clip(0.75 + 0.5 * (hair_tex - 1), 0.5, 1.0)
        brow_rgb = np.minimum(hair_rgb * 0.8, skin_rgb * 0.45)
        albedo = albedo * (1 - brow_f[..., None]) + brow_rgb * brow_f[..., None]

        # Lips: red of the lips, the seam between them, then the mouth interior when they part.
        lip = np.zeros((h, w), np.uint8)
        cv2.fillPoly(lip, poly(shape[48:60]), 255, cv2.LINE_AA, SHIFT)
        lip_f = cv2.GaussianBlur(lip.astype(np.float32) / 255.0, (0, 0), 0.006 * ppu + 0.5)[..., None]
        upper_dark = np.where(ys < float(shape[62, 1]), np.float32(0.88), np.float32(1.0))[..., None]
        albedo = albedo * (1 - lip_f) + (lip_rgb * upper_dark) * lip_f
        seam = np.zeros((h, w), np.uint8)
        cv2.polylines(
            seam,
            poly(shape[[48, 60, 61, 62, 63, 64, 54]]),
            False,
            200,
            max(1, lash // 2 + 1),
            cv2.LINE_AA,
            SHIFT,
        )
        seam_f = cv2.GaussianBlur(seam.astype(np.float32) / 255.0, (0, 0), 0.5)[..., None]
        albedo = albedo * (1 - 0.6 * seam_f) + np.array([0.25, 0.08, 0.08], np.float32) * 0.6 * seam_f
        albedo = draw_mouth_interior(albedo, to_px(shape[60:68]), ppu, TEETH_RGB)

        # AU wrinkles and furrows.
        dark, light = au_appearance_layers(
            (h, w), shape, to_px, ppu, aus, identity.age_lines, identity.background_seed
        )
        albedo = apply_layers(albedo, dark, light)

        # Hair over the forehead and sides; ears under it.
        hair_col = hair_rgb * np.clip(hair_tex, 0.6, 1.4)[..., None]
        albedo_ears = skin_rgb * 0.9
        base = albedo * skin_a[..., None] + albedo_ears * (ear_a * (1 - skin_a))[..., None]
        albedo = base * (1 - hair_alpha[..., None]) + hair_col * hair_alpha[..., None]
        alpha = np.clip(np.maximum(np.maximum(skin_a, ear_a), hair_alpha), 0, 1)

        # Shading from the depth map's normals, light given in camera space -> head space.
        z = depth_map(xs, ys, shape, aus)
        z_shade = z + 0.04 * hair_alpha  # hair volume
        gy, gx = np.gradient(z_shade * ppu)  # dz per pixel, face units scaled to pixels
        nx, ny = -gx, -gy
        norm = np.sqrt(nx * nx + ny * ny + 1)
        light_h = [float(v) for v in rotation.T @ np.array(scene.light_dir)]
        view_h = rotation.T @ np.array([0.0, 0.0, 1.0])
        ndotl = (nx * light_h[0] + ny * light_h[1] + light_h[2]) / norm
        half = np.array(light_h) + view_h
        half = [float(v) for v in half / np.linalg.norm(half)]
        ndoth = np.clip((nx * half[0] + ny * half[1] + half[2]) / norm, 0, 1)
        shade = scene.ambient + scene.diffuse * np.clip(ndotl, 0, None)
        gloss = 0.06 * (1 - hair_alpha) * skin_a
        colour = (
            albedo * shade[..., None] * np.array(scene.light_rgb, np.float32)
            + (gloss * _pow18(ndoth))[..., None]
        )
        if identity.glasses:
            colour, alpha = self._glasses(colour, alpha, shape, to_px, ppu, identity)
        return colour.astype(np.float32), alpha.astype(np.float32), z

    def _glasses(self, colour, alpha, shape, to_px, ppu, identity):  # type: ignore[no-untyped-def]
        frame = np.zeros(alpha.shape, np.uint8)
        thickness = max(1, int(round(0.025 * ppu)))
        centres = []
        for eye in (slice(36, 42), slice(42, 48)):
            centre = shape[eye].mean(0) + np.array([0.0, 0.01])
            centres.append(centre)
            c = tuple(np.round(to_px(centre) * SCALE).astype(int))
            cv2.ellipse(
                frame,
                c,
                (int(0.21 * ppu * SCALE), int(0.14 * ppu * SCALE)),
                0,
                0,
                360,
                255,
                thickness,
                cv2.LINE_AA,
                SHIFT,
            )
        bridge = np.array([centres[0] + np.array([0.2, -0.02]), centres[1] + np.array([-0.2, -0.02])])
        cv2.polylines(
            frame,
            [np.round(to_px(bridge) * SCALE).astype(np.int32)],
            False,
            255,
            thickness,
            cv2.LINE_AA,
            SHIFT,
        )
        f = frame.astype(np.float32)[..., None] / 255.0
        rgb = (
            np.array([0.08, 0.07, 0.07], np.float32)
            if identity.identity_id % 2
            else np.array([0.35, 0.2, 0.1], np.float32)
        )
        return colour * (1 - f) + rgb * f, alpha

    # -- posing ---------------------------------------------------------------------------------------
    def render(
        self,
        identity: Identity,
        aus: dict[int, float],
        pose: Pose,
        rng: np.random.Generator,
        scene: Scene,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame: uint8 RGB (size, size, 3) and float32 (68, 2) landmarks in output pixels."""
        size = self.size
        ppu_out = size * IOD_FRACTION * pose.scale  # output pixels per face unit
        ppu = (
            size * IOD_FRACTION * CANVAS_SCALE
        )  # canonical pixels per face unit (fixed: textures are cached)
        shape = expression_shape(identity_shape(identity), aus)
        rotation = rotation_matrix(pose.yaw, pose.pitch, pose.roll)
        colour, alpha, z = self.render_canonical(identity, shape, aus, ppu, scene, rotation)
        # Geometry uses a smoothed height field so the inverse mapping converges (folds stay small).
        z_geo = cv2.GaussianBlur(z, (0, 0), 0.06 * ppu)
        origin = np.array([EYE_CENTRE_FRACTION[0] + pose.tx, EYE_CENTRE_FRACTION[1] + pose.ty]) * size

        # Output pixel -> face units u; solve u = A (q - c) + b (z(q) - cz) + c for canonical q.
        gx, gy = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
        ux = (gx - origin[0]) / ppu_out
        uy = (gy - origin[1]) / ppu_out
        a_inv = np.linalg.inv(rotation[:2, :2])
        b = rotation[:2, 2]
        c = ROTATION_CENTRE
        qx, qy = ux.copy(), uy.copy()
        zq = np.zeros_like(ux)
        for _ in range(6):
            rx = ux - c[0] - b[0] * (zq - c[2])
            ry = uy - c[1] - b[1] * (zq - c[2])
            nqx = a_inv[0, 0] * rx + a_inv[0, 1] * ry + c[0]
            nqy = a_inv[1, 0] * rx + a_inv[1, 1] * ry + c[1]
            qx, qy = 0.5 * qx + 0.5 * nqx, 0.5 * qy + 0.5 * nqy
            mx = ((qx + CANVAS_X) * ppu).astype(np.float32)
            my = ((qy - CANVAS_Y_TOP) * ppu).astype(np.float32)
            zq = cv2.remap(z_geo, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        head = cv2.remap(colour, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        head_a = cv2.remap(alpha, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

        # Landmarks: the same height field at the landmark positions, rotated and projected.
        lx = ((shape[:, 0] + CANVAS_X) * ppu).astype(np.float32)[None]
        ly = ((shape[:, 1] - CANVAS_Y_TOP) * ppu).astype(np.float32)[None]
        lz = cv2.remap(z_geo, lx, ly, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]
        p3 = np.c_[shape, lz]
        projected = (p3 - c) @ rotation.T + c
        landmarks = (origin + projected[:, :2] * ppu_out).astype(np.float32)
        ppu = ppu_out  # body and neck below are drawn in output pixels

        # Background with neck and shoulders in the output frame (they do not follow head pitch/yaw).
        key = (scene.background_seed, size)
        if key not in self._background_cache:
            self._background_cache = {key: background_image(scene, size)}
        frame = self._background_cache[key].copy()
        skin = np.array(identity.skin_rgb, np.float32) / 255.0
        neck_x = float(landmarks[8, 0] * 0.3 + landmarks[[4, 12], 0].mean() * 0.7)
        neck_half = 0.36 * ppu
        top = float(landmarks[[3, 13], 1].mean())
        body_top = float(landmarks[8, 1]) + 0.55 * ppu
        cv2.ellipse(
            frame,
            (int(neck_x), int(body_top + 1.1 * ppu)),
            (int(1.9 * ppu), int(1.1 * ppu)),
            0,
            180,
            360,
            tuple(float(v) / 255.0 for v in scene.clothes_rgb),
            -1,
            cv2.LINE_AA,
        )
        cv2.rectangle(
            frame,
            (int(neck_x - 1.9 * ppu), int(body_top + 1.1 * ppu)),
            (int(neck_x + 1.9 * ppu), size),
            tuple(float(v) / 255.0 for v in scene.clothes_rgb),
            -1,
        )
        neck = np.array(
            [
                [neck_x - neck_half, top],
                [neck_x + neck_half, top],
                [neck_x + neck_half * 1.1, body_top + 0.4 * ppu],
                [neck_x - neck_half * 1.1, body_top + 0.4 * ppu],
            ]
        )
        cv2.fillPoly(
            frame,
            [np.round(neck * SCALE).astype(np.int32)],
            tuple(float(v) for v in skin * 0.62 * scene.ambient * 1.6),
            cv2.LINE_AA,
            SHIFT,
        )
        out = frame * (1 - head_a[..., None]) + head * head_a[..., None]

        # Camera: optical blur, sensor noise, quantisation.
        if scene.blur_sigma > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), scene.blur_sigma * size / 256)
        out = out * 255.0 + rng.normal(0.0, scene.noise_sigma, out.shape).astype(np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8), landmarks
