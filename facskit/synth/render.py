"""Render a parametric face: albedo and a depth map drawn in a frontal canonical frame, lit, then posed.

Why a canonical frame: every feature (eyes, brows, lips, wrinkles) is drawn once, upright and frontal, from
the AU-displaced 68 landmarks; head pose is then a per-pixel 3D rotation of that textured height field
(inverse-mapped by fixed-point iteration and ``cv2.remap``), so shading, foreshortening and the projected
ground-truth landmarks all come from the same geometry. Units: face units (inter-ocular distance = 1) in
the canonical frame, pixels in the output, degrees for pose.

This module holds :class:`FaceRenderer`, which runs the steps in order; each step lives in a module of
its own: :mod:`~facskit.synth.canvas` (the canonical frame), :mod:`~facskit.synth.features` (the painted
features), :mod:`~facskit.synth.depth` (the height field), :mod:`~facskit.synth.shading` (the light),
:mod:`~facskit.synth.posing` (head pose and landmarks) and :mod:`~facskit.synth.scene` (background, body,
camera). Their public names are importable from here as well, where they were defined before.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facskit.synth.appearance import apply_layers, au_appearance_layers
from facskit.synth.canvas import CANVAS_SCALE, CANVAS_X, CANVAS_Y_BOTTOM, CANVAS_Y_TOP, Canvas
from facskit.synth.depth import depth_map
from facskit.synth.face_model import Identity, expression_shape, identity_shape, rotation_matrix
from facskit.synth.features import (
    TEETH_RGB,
    cover_with_hair,
    draw_brows,
    draw_eyes,
    draw_glasses,
    draw_lids_and_nostrils,
    draw_lips,
    head_masks,
    rgb01,
    skin_albedo,
)
from facskit.synth.posing import EYE_CENTRE_FRACTION, IOD_FRACTION, project_landmarks, warp_head
from facskit.synth.scene import Scene, background_image, capture, draw_body, sample_scene
from facskit.synth.shading import shade

__all__ = [
    "CANVAS_SCALE",
    "CANVAS_X",
    "CANVAS_Y_BOTTOM",
    "CANVAS_Y_TOP",
    "EYE_CENTRE_FRACTION",
    "IOD_FRACTION",
    "TEETH_RGB",
    "FaceRenderer",
    "Pose",
    "Scene",
    "background_image",
    "depth_map",
    "render_face",
    "sample_scene",
]

# The height field is smoothed by this many face units before posing, so the inverse mapping converges.
GEOMETRY_BLUR = 0.06


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees plus placement: translation as a fraction of the image side, relative scale."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    scale: float = 1.0


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

    def _background(self, scene: Scene) -> np.ndarray:
        """The scene's background at the output size (cached: a recording keeps its scene)."""
        key = (scene.background_seed, self.size)
        if key not in self._background_cache:
            self._background_cache = {key: background_image(scene, self.size)}
        return self._background_cache[key]

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
        canvas = Canvas.at(ppu)
        skin_tex, hair_tex = self._textures(identity, canvas.h, canvas.w)
        masks = head_masks(canvas, shape, identity)
        # Painter's order: skin, eyes, lids and nostrils, brows, lips, AU wrinkles, then ears and hair.
        albedo = skin_albedo(canvas, shape, identity, skin_tex, masks.face)
        albedo = draw_eyes(albedo, canvas, shape, identity)
        albedo = draw_lids_and_nostrils(albedo, canvas, shape, identity)
        albedo = draw_brows(albedo, canvas, shape, identity, hair_tex)
        albedo = draw_lips(albedo, canvas, shape, identity)
        dark, light = au_appearance_layers(
            (canvas.h, canvas.w), shape, canvas.to_px, ppu, aus, identity.age_lines, identity.background_seed
        )
        albedo = apply_layers(albedo, dark, light)
        albedo, alpha = cover_with_hair(albedo, masks, identity, hair_tex)
        z = depth_map(canvas.xs, canvas.ys, shape, aus)
        colour = shade(albedo, z, masks.skin, masks.hair, ppu, scene, rotation)
        if identity.glasses:
            colour = draw_glasses(colour, canvas, shape, identity)
        return colour.astype(np.float32), alpha.astype(np.float32), z

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
        # canonical pixels per face unit (fixed whatever the pose: textures are cached)
        ppu = size * IOD_FRACTION * CANVAS_SCALE
        shape = expression_shape(identity_shape(identity), aus)
        rotation = rotation_matrix(pose.yaw, pose.pitch, pose.roll)
        colour, alpha, z = self.render_canonical(identity, shape, aus, ppu, scene, rotation)
        # Geometry uses a smoothed height field so the inverse mapping converges (folds stay small).
        z_geo = cv2.GaussianBlur(z, (0, 0), GEOMETRY_BLUR * ppu)
        origin = np.array([EYE_CENTRE_FRACTION[0] + pose.tx, EYE_CENTRE_FRACTION[1] + pose.ty]) * size
        head, head_a = warp_head(colour, alpha, z_geo, rotation, origin, ppu, ppu_out, size)
        landmarks = project_landmarks(shape, z_geo, rotation, origin, ppu, ppu_out)
        # Background with neck and shoulders in the output frame (they do not follow head pitch/yaw).
        frame = self._background(scene).copy()
        draw_body(frame, landmarks, rgb01(identity.skin_rgb), scene, ppu_out, size)
        out = frame * (1 - head_a[..., None]) + head * head_a[..., None]
        return capture(out, scene, rng), landmarks


def render_face(
    identity: Identity,
    au_intensities: dict[int, float],
    pose: Pose,
    rng: np.random.Generator,
    size: int = 256,
    scene: Scene | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One frame -> (uint8 RGB (size, size, 3), float32 (68, 2) landmarks in pixels); see FaceRenderer."""
    renderer = FaceRenderer(size)
    return renderer.render(
        identity, au_intensities, pose, rng, scene if scene is not None else sample_scene(rng)
    )
