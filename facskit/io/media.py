"""Expand what a user typed (files, folders, glob patterns) into a sorted list of media files.

Folders are walked recursively and sorted so that two runs over the same tree visit files in the same
order (resumable jobs and reproducible CSVs depend on it). Only files with a known image or video
extension are taken from folders and patterns; a file named explicitly is taken whatever its extension,
because FFmpeg reads containers that carry no standard extension.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from facskit.errors import MediaError, UsageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
        ".3gp", ".ts", ".mts", ".m2ts", ".ogv", ".mxf", ".y4m",
    }
)  # fmt: skip
GLOB_CHARACTERS = frozenset("*?[")


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"


@dataclass(frozen=True)
class MediaFile:
    """One input file and how it is decoded (a still image or a video stream)."""

    path: Path
    kind: MediaKind


def media_kind(path: Path) -> MediaKind | None:
    """The kind implied by the file extension, or None for an extension that is neither."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return MediaKind.IMAGE
    if suffix in VIDEO_EXTENSIONS:
        return MediaKind.VIDEO
    return None


def _media_in_folder(folder: Path) -> list[MediaFile]:
    found: list[MediaFile] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            kind = media_kind(path)
            if kind is not None and not name.startswith("."):
                found.append(MediaFile(path, kind))
    return sorted(found, key=lambda media: str(media.path))


def expand_path(path: str | os.PathLike[str]) -> list[MediaFile]:
    """The media files one command-line argument stands for.

    Raises UsageError for a path that does not exist (and is not a glob pattern matching something), and
    MediaError for a folder or pattern that holds no image or video.
    """
    text = os.fspath(path)
    candidate = Path(text).expanduser()
    if candidate.is_file():
        return [MediaFile(candidate, media_kind(candidate) or MediaKind.VIDEO)]
    if candidate.is_dir():
        found = _media_in_folder(candidate)
        if not found:
            raise MediaError(f"{text}: folder contains no image or video files")
        return found
    if GLOB_CHARACTERS & set(text):
        matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        if not matches:
            raise UsageError(f"{text}: pattern matches no files")
        found = []
        for match in matches:
            match_path = Path(match)
            if match_path.is_dir():
                found.extend(_media_in_folder(match_path))
            elif (kind := media_kind(match_path)) is not None:
                found.append(MediaFile(match_path, kind))
        if not found:
            raise MediaError(f"{text}: pattern matches no image or video files")
        return found
    if candidate.exists():
        raise MediaError(f"{text}: not a regular file or folder")
    if candidate.is_symlink():
        raise MediaError(f"{text}: a broken symbolic link (or a loop of links)")
    raise UsageError(f"{text}: no such file or folder")


def resolved(path: Path) -> Path:
    """``path`` made absolute with its symbolic links followed, or only absolute where they cannot be (a
    symlink loop, a dangling link): such an entry is still listed, and reading it fails with a one-line
    MediaError for that entry alone instead of an exception that loses every other input."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: "Symlink loop" (Python < 3.13)
        return Path(os.path.abspath(path))


def iter_media(paths: Iterable[str | os.PathLike[str]]) -> Iterator[MediaFile]:
    """Expand every path in order (see `expand_path`); a file named twice is yielded once."""
    seen: set[Path] = set()
    for path in paths:
        for media in expand_path(path):
            key = resolved(media.path)
            if key not in seen:
                seen.add(key)
                yield media
