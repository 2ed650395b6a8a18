"""What ``Detector.analyze`` accepts, checked before any library sees it: paths, ``MediaFile``s, RGB uint8
arrays and Pillow images (converted), each refused in one line naming what is accepted instead, rather than
whatever exception the first library to touch it would raise."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from facskit.errors import UsageError


class ArrayFrame:
    """An in-memory image presented like :class:`facskit.io.Frame` (index 0, timestamp 0)."""

    def __init__(self, image: np.ndarray) -> None:
        self.index = 0
        self.timestamp = 0.0
        self.image = image


ACCEPTED_INPUTS = (
    "a path (file, folder or glob pattern), a facskit.io.MediaFile, an RGB uint8 array (H, W, 3), "
    "a PIL image, or a list of these"
)


def not_accepted(item: Any) -> str:
    return f"cannot analyse {type(item).__name__} {short_repr(item)}: pass {ACCEPTED_INPUTS}"


def short_repr(item: Any, limit: int = 60) -> str:
    text = repr(item)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_single(inputs: Any) -> bool:
    """One input rather than a collection of them (a string is a sequence, an array is iterable)."""
    from facskit.io import MediaFile

    return isinstance(inputs, str | os.PathLike | np.ndarray | MediaFile) or is_pil_image(inputs)


def is_pil_image(item: Any) -> bool:
    """Whether ``item`` is a Pillow image, without importing Pillow for callers that never pass one."""
    import sys

    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(item, pil.Image)


def as_array(image: Any) -> np.ndarray:
    """A Pillow image (any mode, EXIF-rotated as a file would be) or an array, as an array."""
    if isinstance(image, np.ndarray):
        return image
    from facskit.io import image_to_rgb

    try:
        return image_to_rgb(image)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot convert the PIL image {short_repr(image)} to RGB ({error})") from None


def check_array(image: np.ndarray) -> np.ndarray:
    """An image array the face detector can take: (H, W, 3) uint8 RGB, at least MIN_IMAGE_SIDE a side (what
    :func:`facskit.io.read_image` asks of a file; an empty array would fail deep inside OpenCV)."""
    from facskit.io import MIN_IMAGE_SIDE

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(f"an image array must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        raise UsageError(
            f"an image array must be at least {MIN_IMAGE_SIDE} pixels a side to hold a face, "
            f"got {image.shape}"
        )
    return image
