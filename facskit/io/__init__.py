"""facskit.io: media in. Files, folders and glob patterns become `MediaFile`s; images and videos become
streams of `Frame`s (uint8 RGB, index, timestamp in seconds). Nothing is loaded whole."""

from facskit.io.frames import Frame, MediaInfo, iter_frames, probe
from facskit.io.image import (
    MAX_IMAGE_PIXELS,
    MIN_IMAGE_SIDE,
    image_page_count,
    image_size,
    image_to_rgb,
    iter_image_pages,
    read_image,
)
from facskit.io.media import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    MediaFile,
    MediaKind,
    expand_path,
    iter_media,
    media_kind,
    resolved,
)
from facskit.io.progress import Progress

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "MIN_IMAGE_SIDE",
    "VIDEO_EXTENSIONS",
    "Frame",
    "MediaFile",
    "MediaInfo",
    "MediaKind",
    "Progress",
    "expand_path",
    "image_page_count",
    "image_size",
    "image_to_rgb",
    "iter_image_pages",
    "iter_frames",
    "iter_media",
    "media_kind",
    "probe",
    "read_image",
    "resolved",
]
