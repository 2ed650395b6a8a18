"""Atomic file writes: the one way facskit writes a file that someone may read while it is being written
or after a kill (results, caches, checkpoints, exports, figures, reports).

Every helper writes a temporary file in the target's folder, then renames it over the target with
``os.replace`` (atomic on POSIX and Windows within one file system), so a reader sees the old file or the
new one, never half of one. The temporary name is ``.<name>.<8 random characters>.tmp``: hidden, unique per
writer (two processes writing the same path never share a temporary file) and recognisable, so that
``facskit analyze`` can remove what a killed run left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facskit.errors import FacskitError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], None], durable: bool = False, parents: bool = False
) -> Path:
    """Write ``path`` through ``write(tmp_path)`` then ``os.replace``; returns ``path``.

    ``durable`` fsyncs the temporary file before the rename, so that after a power loss the new name never
    points at unwritten blocks (checkpoints, caches that take hours to rebuild); ``parents`` creates the
    folder first. A failure (disk full, Ctrl-C) removes the temporary file and leaves any previous ``path``
    untouched; an ``OSError`` becomes a one-line :class:`FacskitError` naming the file.
    """
    path = Path(path)
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise FacskitError(f"cannot write {path}: {error.strerror or error}") from error
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        write(tmp)
        if durable:
            with tmp.open("rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise FacskitError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, **options: Any) -> Path:
    """``data`` to ``path`` atomically (``options`` as for :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), **options)


def atomic_write_text(path: str | os.PathLike[str], text: str, **options: Any) -> Path:
    """``text`` to ``path`` as UTF-8, atomically (``options`` as for :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), **options)


def atomic_write_json(
    path: str | os.PathLike[str],
    document: Any,
    indent: int = 2,
    sort_keys: bool = False,
    allow_nan: bool = True,
    **options: Any,
) -> Path:
    """``document`` as JSON plus a final newline, atomically. ``allow_nan=False`` refuses NaN and Infinity
    (not JSON: a strict reader fails on them) where a file is read outside Python."""
    text = json.dumps(document, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan) + "\n"
    return atomic_write_text(path, text, **options)


def atomic_write_parquet(path: str | os.PathLike[str], frame: pd.DataFrame, **options: Any) -> Path:
    """``frame`` to Parquet without its index, atomically (``options`` as for :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False), **options)


def atomic_write_npy(path: str | os.PathLike[str], array: np.ndarray, **options: Any) -> Path:
    """``array`` as a C-ordered ``.npy`` file (no pickles), atomically; ``np.load(path, mmap_mode="r")``
    maps it back. Written through a handle: ``np.save`` given the temporary name would append ``.npy``."""
    import numpy as np

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)

    return atomic_write(path, write, **options)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_text",
]
