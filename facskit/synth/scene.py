"""Everything in a frame that is not the head: the room behind it, the body under it, the camera.

These stay fixed through one recording (:class:`Scene`), so they are drawn in output pixels, after posing:
the background, neck and shoulders do not follow the head's pitch and yaw, and the camera's blur and
sensor noise act on the finished picture. Colours RGB 0..255 in :class:`Scene`, 0..1 in the images.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facskit.synth.appearance import SCALE, SHIFT


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
        _draw_clutter(img, rng, size)
    texture = cv2.resize(rng.normal(0, 0.04, (size // 16, size // 16, 3)).astype(np.float32), (size, size))
    img = cv2.GaussianBlur(img + texture, (0, 0), rng.uniform(0.8, 3.0) * size / 256)
    return np.clip(img, 0, 1)


def _draw_clutter(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    """One random object of the room on ``img``: a box, a disc or a line (draws from ``rng`` in order)."""
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


def draw_body(
    frame: np.ndarray, landmarks: np.ndarray, skin_rgb: np.ndarray, scene: Scene, ppu: float, size: int
) -> None:
    """Shoulders in the scene's clothes and the neck in shaded skin, on ``frame`` under the posed head.

    Placed from the posed ``landmarks`` (output pixels; ``ppu`` output pixels per face unit) so that the
    neck meets the jaw whatever the pose. ``skin_rgb`` is 0..1.
    """
    neck_x = float(landmarks[8, 0] * 0.3 + landmarks[[4, 12], 0].mean() * 0.7)
    neck_half = 0.36 * ppu
    top = float(landmarks[[3, 13], 1].mean())
    body_top = float(landmarks[8, 1]) + 0.55 * ppu
    clothes = tuple(float(v) / 255.0 for v in scene.clothes_rgb)
    cv2.ellipse(
        frame,
        (int(neck_x), int(body_top + 1.1 * ppu)),
        (int(1.9 * ppu), int(1.1 * ppu)),
        0,
        180,
        360,
        clothes,
        -1,
        cv2.LINE_AA,
    )
    cv2.rectangle(
        frame,
        (int(neck_x - 1.9 * ppu), int(body_top + 1.1 * ppu)),
        (int(neck_x + 1.9 * ppu), size),
        clothes,
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
        tuple(float(v) for v in skin_rgb * 0.62 * scene.ambient * 1.6),
        cv2.LINE_AA,
        SHIFT,
    )


def capture(image: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The camera: optical blur, sensor noise (drawn from ``rng``) and quantisation of a 0..1 float image."""
    size = image.shape[0]
    if scene.blur_sigma > 0.05:
        image = cv2.GaussianBlur(image, (0, 0), scene.blur_sigma * size / 256)
    image = image * 255.0 + rng.normal(0.0, scene.noise_sigma, image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)
