"""The frame every media reader yields, in a module of its own so that reading images never imports PyAV
(``import av``: ~55 ms of a one-image ``facskit analyze``, measured with ``python -X importtime``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """A frame of a media file: 0-based index (a video's in decode order, a multi-page image's page),
    timestamp in seconds since the stream start (0.0 for an image), (H, W, 3) uint8 RGB pixels.
    :func:`facskit.io.iter_frames` yields these for images and videos alike."""

    index: int
    timestamp: float
    image: np.ndarray


__all__ = ["Frame"]
