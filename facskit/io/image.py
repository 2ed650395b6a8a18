"""Still images in: any Pillow-readable JPEG, PNG, BMP, TIFF or WebP as uint8 RGB.

The pixel count is checked from the header before any pixel is decoded, so a 20000 x 20000 "decode bomb"
costs a few bytes of reading, not 1.2 GB of memory. Large-but-legal images are returned at full
resolution: the face detector downscales its own copy, landmarks need every pixel.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facskit.errors import MediaError

MAX_IMAGE_PIXELS = 100_000_000  # 100 MP (~300 MB as RGB): larger is refused as a likely decode bomb
MIN_IMAGE_SIDE = 16  # pixels; a smaller image cannot hold a face the 68-point model can fit


def _check_size(path: Path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        limit = MAX_IMAGE_PIXELS // 1_000_000
        raise MediaError(f"{path}: image is {width}x{height} pixels, more than the {limit} MP limit")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise MediaError(
            f"{path}: image is {width}x{height} pixels, smaller than {MIN_IMAGE_SIDE} pixels on a side"
        )


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) in pixels from the header alone, after EXIF rotation; MediaError if unreadable."""
    path = Path(path)
    try:
        with _open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise MediaError(f"{path}: not a readable image ({_reason(error)})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _open(path: Path) -> Image.Image:
    """Image.open with Pillow's own bomb check turned into our one-line MediaError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError:
        raise MediaError(
            f"{path}: image has more pixels than the {MAX_IMAGE_PIXELS // 1_000_000} MP limit"
        ) from None


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text.replace(" cannot identify image file", "unknown format")


def _to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to (H, W, 3) uint8 RGB; 16-bit and float data are scaled, not clipped."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        pixels = np.asarray(image, dtype=np.int64)
        # 16-bit data spans 0..65535; Pillow's own convert("L") would clip at 255 and give a white image.
        gray = np.clip(pixels, 0, 65535) // 257 if pixels.max(initial=0) > 255 else pixels
        return np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2)
    if mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        top = 1.0 if pixels.max(initial=0.0) <= 1.0 else 255.0
        gray = np.clip(np.round(pixels / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")  # drops alpha: the face is what matters, not the background
    return np.asarray(image, dtype=np.uint8).copy()


def image_to_rgb(image: Image.Image) -> np.ndarray:
    """An in-memory Pillow image as (H, W, 3) uint8 RGB, EXIF orientation applied: what :func:`read_image`
    gives for the same picture on disk, so ``Detector().analyze(pil_image)`` and a file agree."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        upright = ImageOps.exif_transpose(image)
    return _to_rgb_uint8(upright if upright is not None else image)


def image_page_count(path: str | os.PathLike[str]) -> int:
    """Pages (frames) of a still image file: several for a multi-page TIFF or an animated WebP/PNG, else 1."""
    path = Path(path)
    try:
        with _open(path) as image:
            return max(1, int(getattr(image, "n_frames", 1)))
    except MediaError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as error:
        raise MediaError(f"{path}: not a readable image ({_reason(error)})") from None


def iter_image_pages(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Every page of an image file in order, each as :func:`read_image` decodes a one-page file.

    A multi-page TIFF is a stack of pictures (a scan session, a microscope series): analysing only its first
    page would drop the rest without a word, so each page is a frame. Each page's size is checked before it
    is decoded; a page that cannot be read raises MediaError after the good pages before it.
    """
    path = Path(path)
    page = 0
    try:
        with _open(path) as image:
            pages = max(1, int(getattr(image, "n_frames", 1)))
            for page in range(pages):
                if page:
                    image.seek(page)
                _check_size(path, *image.size)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": the pixels are still fine
                    image.load()
                    upright = ImageOps.exif_transpose(image)
                yield _to_rgb_uint8(upright if upright is not None else image)
    except MediaError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as error:
        where = f" page {page + 1}" if page else ""
        raise MediaError(f"{path}:{where} not a readable image ({_reason(error)})") from None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a still image (its first page: :func:`iter_image_pages` reads them all) to (H, W, 3) uint8 RGB
    with EXIF orientation applied.

    Raises MediaError naming the file for an unreadable or truncated file, or one whose size (read from
    the header before decoding) is below MIN_IMAGE_SIDE or above MAX_IMAGE_PIXELS.
    """
    path = Path(path)
    try:
        with _open(path) as image:
            _check_size(path, *image.size)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": the pixels are still fine
                image.load()
                upright = ImageOps.exif_transpose(image)
            return _to_rgb_uint8(upright)
    except MediaError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as error:
        raise MediaError(f"{path}: not a readable image ({_reason(error)})") from None
