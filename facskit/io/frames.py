"""One way to walk any media file frame by frame: an image is a video of one frame."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from facskit.deprecation import renamed_keyword
from facskit.io.frame import Frame
from facskit.io.image import image_page_count, image_size, iter_image_pages
from facskit.io.media import MediaFile, MediaKind, media_kind


@dataclass(frozen=True)
class MediaInfo:
    """What is known before decoding: frame_count and fps are None when the container does not say."""

    kind: MediaKind
    frame_count: int | None
    fps: float | None
    width: int
    height: int


def _as_media(path: str | os.PathLike[str] | MediaFile) -> MediaFile:
    if isinstance(path, MediaFile):
        return path
    path = Path(path)
    return MediaFile(path, media_kind(path) or MediaKind.VIDEO)


def probe(path: str | os.PathLike[str] | MediaFile) -> MediaInfo:
    """Size, frame count and frame rate from the file header (no pixel decoded); MediaError if unreadable."""
    media = _as_media(path)
    if media.kind is MediaKind.IMAGE:
        width, height = image_size(media.path)
        return MediaInfo(MediaKind.IMAGE, image_page_count(media.path), None, width, height)
    from facskit.io.video import probe_video  # PyAV only for videos

    info = probe_video(media.path)
    return MediaInfo(MediaKind.VIDEO, info.frame_count, info.fps, info.width, info.height)


@renamed_keyword("every", "frame_step")
def iter_frames(
    path: str | os.PathLike[str] | MediaFile, frame_step: int = 1, threads: int | None = None
) -> Iterator[Frame]:
    """Stream the frames of an image (one frame: index 0, timestamp 0.0) or a video (every
    ``frame_step``-th).

    A multi-page image (TIFF stack, animated WebP/PNG) is one frame per page, every page (index = page, each
    a still picture with timestamp 0.0: pages carry no clock), so no page is dropped unseen.
    Errors are MediaError naming the file; a video that breaks off raises after its last good frame.
    """
    media = _as_media(path)
    if media.kind is MediaKind.IMAGE:
        for page, image in enumerate(iter_image_pages(media.path)):
            yield Frame(page, 0.0, image)
        return
    from facskit.io.video import iter_video_frames  # PyAV only for videos

    yield from iter_video_frames(media.path, frame_step=frame_step, threads=threads)
