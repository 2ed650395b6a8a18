"""Lighting of the canonical head: Lambertian shade plus a specular sheen, from the height field's normals.

Why in the canonical frame: the albedo and the height field are both there, and shading before posing
means the posed image needs one warp only. The light is given in camera space (:class:`Scene`) and is
rotated into the head's frame, so the lit side stays with the light when the head turns.
"""

from __future__ import annotations

import numpy as np

from facskit.synth.scene import Scene

HAIR_VOLUME = 0.04  # face units the hair stands out from the scalp, for shading only
SKIN_GLOSS = 0.06  # strength of the specular sheen on bare skin


def shade(
    albedo: np.ndarray,
    z: np.ndarray,
    skin_alpha: np.ndarray,
    hair_alpha: np.ndarray,
    ppu: float,
    scene: Scene,
    rotation: np.ndarray,
) -> np.ndarray:
    """The lit colour, float (h, w, 3), of ``albedo`` on the height field ``z`` (face units, ``ppu``
    canvas pixels per face unit) under the scene's light, for a head turned by ``rotation`` (3x3)."""
    z_shade = z + HAIR_VOLUME * hair_alpha
    gy, gx = np.gradient(z_shade * ppu)  # dz per pixel, face units scaled to pixels
    nx, ny = -gx, -gy
    norm = np.sqrt(nx * nx + ny * ny + 1)
    light_h = [float(v) for v in rotation.T @ np.array(scene.light_dir)]
    view_h = rotation.T @ np.array([0.0, 0.0, 1.0])
    ndotl = (nx * light_h[0] + ny * light_h[1] + light_h[2]) / norm
    half = np.array(light_h) + view_h
    half = [float(v) for v in half / np.linalg.norm(half)]
    ndoth = np.clip((nx * half[0] + ny * half[1] + half[2]) / norm, 0, 1)
    lambert = scene.ambient + scene.diffuse * np.clip(ndotl, 0, None)
    gloss = SKIN_GLOSS * (1 - hair_alpha) * skin_alpha
    return (
        albedo * lambert[..., None] * np.array(scene.light_rgb, np.float32)
        + (gloss * _pow18(ndoth))[..., None]
    )


def _pow18(x: np.ndarray) -> np.ndarray:
    """x ** 18 by squaring (a specular lobe), several times faster than a float power."""
    x2 = x * x
    x4 = x2 * x2
    x16 = x4 * x4
    x16 *= x16
    return x16 * x2
