"""Training augmentation of aligned crops and their landmarks, drawn from a per-sample random generator.

Geometry (flip, rotation, scale, shift) is applied to the image and the landmarks together, so the AU
points and target heatmaps computed afterwards follow the face. A flip mirrors the image and permutes the
landmarks with ``FLIP_PERMUTATION_68``: landmark 36 of the flipped face is the mirrored landmark 45, so the
left and right points of a bilateral AU swap with the face and SCC's left/right maps stay consistent.

Every draw comes from the ``numpy.random.Generator`` passed in; the dataset seeds one per sample from
(seed, epoch, index), which makes a sample's augmentation independent of worker count, rank and resume.
"""

from __future__ import annotations

import cv2
import numpy as np

from facskit.aus import FLIP_PERMUTATION_68
from facskit.config import AugmentConfig

__all__ = ["augment_sample", "flip_landmarks", "geometric_matrix"]

_FLIP = np.asarray(FLIP_PERMUTATION_68, dtype=np.int64)


def flip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks ``(68, 2)`` of the horizontally flipped image (x -> width - 1 - x), re-indexed so that
    index i is still iBUG landmark i of the flipped face."""
    mirrored = landmarks.copy()
    mirrored[:, 0] = (width - 1) - mirrored[:, 0]
    return mirrored[_FLIP]


def geometric_matrix(size: int, angle_deg: float, scale: float, shift_xy: tuple[float, float]) -> np.ndarray:
    """The ``(2, 3)`` affine map rotating by ``angle_deg`` and scaling about the crop centre, then shifting
    by ``shift_xy`` pixels: the one matrix both the image warp and the landmarks use."""
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, angle_deg, scale)  # (2, 3) float64
    matrix[:, 2] += shift_xy
    return matrix


def _colour_jitter(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation factors in [1 - amount, 1 + amount], in random order."""
    x = image.astype(np.float32)
    for op in rng.permutation(3):
        factor = float(rng.uniform(1 - amount, 1 + amount))
        if op == 0:  # brightness
            x = x * factor
        elif op == 1:  # contrast about the mean grey level
            grey = x.mean()
            x = (x - grey) * factor + grey
        else:  # saturation about the per-pixel grey (ITU-R 601 luma)
            grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
            x = (x - grey[..., None]) * factor + grey[..., None]
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def augment_sample(
    image: np.ndarray, landmarks: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented copies of an aligned crop ``(S, S, 3) uint8`` and its landmarks ``(68, 2)`` crop pixels.

    The returned landmarks include ``landmark_noise_px`` Gaussian noise: they are what the targets are
    drawn from, simulating the landmark error of a real tracker (the image itself is not moved by it).
    """
    if not config.enabled:
        return image, landmarks
    size = image.shape[1]
    image = np.ascontiguousarray(image)
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if config.flip and rng.random() < 0.5:
        image = np.ascontiguousarray(image[:, ::-1])
        landmarks = flip_landmarks(landmarks, size)
    angle = float(rng.uniform(-config.rotate_deg, config.rotate_deg))
    scale = float(rng.uniform(1 - config.scale, 1 + config.scale))
    shift = rng.uniform(-config.shift, config.shift, size=2) * size
    if angle or scale != 1 or shift.any():
        matrix = geometric_matrix(size, angle, scale, (float(shift[0]), float(shift[1])))
        image = cv2.warpAffine(
            image, matrix, (size, image.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        landmarks = landmarks @ matrix[:, :2].T + matrix[:, 2]
    if config.colour > 0:
        image = _colour_jitter(image, config.colour, rng)
    if config.landmark_noise_px > 0:
        # Noise is given in pixels of the 256 reference crop; scale it to this crop's size.
        sigma = config.landmark_noise_px * size / 256.0
        landmarks = landmarks + rng.normal(0.0, sigma, size=landmarks.shape)
    # Drawn last, and only when enabled, so configs without them repeat their augmentation bit for bit.
    if config.grey > 0 and rng.random() < config.grey:
        luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
        image = np.repeat(np.clip(luma + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if config.blur > 0 and rng.random() < config.blur:
        sigma = float(rng.uniform(0.5, 2.0)) * size / 256.0
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
    return image, landmarks.astype(np.float32)
