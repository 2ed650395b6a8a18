"""The prepared cache: aligned crops in memory-mappable ``.npy`` shards plus one Parquet index.

Layout of a cache folder (docs/data.md explains the choice)::

    meta.json                 format version, dataset, AU list, alignment, landmark mode, shard size
    index.parquet             one row per dataset frame, prepared or skipped (written last, atomically)
    shards/<seq>-0000.npy     uint8 (n <= shard_size, S, S, 3) RGB crops of one sequence, in frame order
    parts/<seq>.parquet       one sequence's rows; its presence marks the sequence complete (resume)

Reading a crop is a slice of a memory map: no decoding, no copy beyond the 196 KB of the crop, and the
operating system's page cache is the only cache. Maps open lazily in each process, so a ``PreparedCache``
pickles to a few arrays and works in ``torch.utils.data.DataLoader`` workers.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facskit.aus import au_column
from facskit.errors import DatasetError
from facskit.io.atomic import atomic_write_json, atomic_write_parquet

CACHE_FORMAT = "facskit-prepared-cache"
CACHE_VERSION = 1
META_FILE = "meta.json"
INDEX_FILE = "index.parquet"
SHARD_DIR = "shards"
PART_DIR = "parts"
N_LANDMARKS = 68
LANDMARK_X = [f"lx_{i}" for i in range(N_LANDMARKS)]
LANDMARK_Y = [f"ly_{i}" for i in range(N_LANDMARKS)]
POSE_COLUMNS = ["yaw", "pitch", "roll"]
# Why a frame has no crop. "" = prepared.
SKIP_NO_FACE = "no_face"
SKIP_UNREADABLE = "unreadable"
SKIP_BAD_LANDMARKS = "bad_landmarks"

# A fixed 128-byte .npy v1.0 header (magic, version, uint16 length, padded dict) lets a shard be streamed
# crop by crop and its shape fixed afterwards in place.
_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_NPY_HEADER_BYTES = 128


def _npy_header(shape: tuple[int, ...]) -> bytes:
    dims = ", ".join(str(s) for s in shape)
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({dims}), }}"
    room = _NPY_HEADER_BYTES - len(_NPY_MAGIC) - 2
    if len(text) + 1 > room:
        raise ValueError(f"shape {shape} does not fit a {_NPY_HEADER_BYTES}-byte header")
    body = (text + " " * (room - len(text) - 1) + "\n").encode("latin1")
    return _NPY_MAGIC + struct.pack("<H", room) + body


def read_cache_settings(out: Path) -> dict[str, Any] | None:
    """The settings the cache in ``out`` was made with (its ``meta.json``), None for a folder without one.

    A damaged file is refused in one line naming it: ``prepare`` and ``teach`` compare these settings before
    resuming, and a resume must never guess what a half-made cache was made with.
    """
    path = out / META_FILE
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DatasetError(
            f"{path}: not valid JSON ({error}); {out} is not a usable cache: use another --out"
        ) from None
    if not isinstance(settings, dict):
        raise DatasetError(f"{path}: not a facskit cache's metadata; use another --out")
    return settings


class ShardWriter:
    """Streams one sequence's crops into ``<stem>-0000.npy``, ``<stem>-0001.npy``... of ``shard_size`` each.

    Each shard is written to ``*.tmp``, its header fixed, flushed to disk and renamed, so a shard file that
    exists is complete; memory use is one crop, whatever the shard size.
    """

    def __init__(self, directory: Path, stem: str, crop_shape: tuple[int, int, int], shard_size: int) -> None:
        self.directory = directory
        self.stem = stem
        self.crop_shape = crop_shape
        self.shard_size = shard_size
        self._number = 0
        self._count = 0
        self._handle: Any = None
        self.written: list[str] = []

    def _name(self, number: int) -> str:
        return f"{self.stem}-{number:04d}.npy"

    def append(self, crop: np.ndarray) -> tuple[str, int]:
        """Write one (S, S, 3) uint8 crop; returns (shard path relative to the cache, offset inside it)."""
        if crop.shape != self.crop_shape or crop.dtype != np.uint8:
            raise ValueError(f"crop must be uint8 {self.crop_shape}, got {crop.dtype} {crop.shape}")
        if self._handle is None:
            tmp = self.directory / (self._name(self._number) + ".tmp")
            self._handle = tmp.open("wb")
            self._handle.write(_npy_header((self.shard_size, *self.crop_shape)))
        self._handle.write(np.ascontiguousarray(crop).tobytes())
        offset = self._count
        self._count += 1
        name = f"{SHARD_DIR}/{self._name(self._number)}"
        if self._count == self.shard_size:
            self._commit()
        return name, offset

    def _commit(self) -> None:
        handle = self._handle
        handle.seek(0)
        handle.write(_npy_header((self._count, *self.crop_shape)))
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        tmp = Path(handle.name)
        final = self.directory / self._name(self._number)
        os.replace(tmp, final)
        self.written.append(f"{SHARD_DIR}/{final.name}")
        self._handle = None
        self._number += 1
        self._count = 0

    def close(self) -> None:
        """Commit the last, partly filled shard."""
        if self._handle is not None:
            self._commit()

    def abort(self) -> None:
        """Drop an uncommitted shard (the sequence failed; a rerun redoes it)."""
        if self._handle is not None:
            name = self._handle.name
            self._handle.close()
            Path(name).unlink(missing_ok=True)
            self._handle = None


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """A cache's index or part, atomically and fsynced (:func:`facskit.io.atomic.atomic_write_parquet`):
    a cache takes hours to rebuild, so a power loss must not leave a renamed but unwritten file."""
    atomic_write_parquet(path, frame, durable=True)


def write_json_atomic(data: dict, path: Path) -> None:
    """A cache's metadata, atomically, in the indented and key-sorted form the cache has always had."""
    atomic_write_json(path, data, indent=2, sort_keys=True)


class PreparedCache:
    """Random access to a prepared cache: ``cache[i]`` is one aligned face with its labels.

    ``cache[i]`` returns ``dict(image=(S, S, 3) uint8 RGB, landmarks=(68, 2) float32 crop pixels,
    intensities=(A,) float32 with NaN = unknown, subject=str, sequence=str, frame=int)``. Only prepared
    frames are items; ``.index`` lists them (a DataFrame with the Parquet columns) and ``.frames`` lists
    every dataset frame including the skipped ones with their ``skip_reason``. ``.aus`` are the AU codes of
    the intensity vector, in order.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / META_FILE
        index_path = self.path / INDEX_FILE
        if not meta_path.is_file() or not index_path.is_file():
            raise DatasetError(
                f"{self.path} is not a complete prepared cache (missing {META_FILE} or {INDEX_FILE}); "
                "run `facskit prepare` (again) to finish it"
            )
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (OSError, ValueError) as error:
            raise DatasetError(f"{meta_path}: unreadable ({error}); run `facskit prepare` again") from None
        if (
            not isinstance(self.meta, dict)
            or self.meta.get("format") != CACHE_FORMAT
            or self.meta.get("version") != CACHE_VERSION
        ):
            raise DatasetError(f"{meta_path}: not a version {CACHE_VERSION} {CACHE_FORMAT}")
        try:
            self.aus: tuple[int, ...] = tuple(int(a) for a in self.meta["aus"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{meta_path}: no valid AU list ('aus')") from None
        try:
            self.frames: pd.DataFrame = pd.read_parquet(index_path)
        except Exception as error:  # pyarrow raises several unrelated types for a damaged file
            raise DatasetError(
                f"{index_path}: unreadable ({type(error).__name__}); run `facskit prepare` again"
            ) from None
        missing = {"skip_reason", "shard", "offset", "subject"} - set(self.frames.columns)
        if missing:
            raise DatasetError(f"{index_path}: not a prepared-cache index (no {', '.join(sorted(missing))})")
        self._set_rows(self.frames[self.frames["skip_reason"] == ""])

    def _set_rows(self, index: pd.DataFrame) -> None:
        self.index = index.reset_index(drop=True)
        shards = self.index["shard"].to_numpy()
        self._shard_names, self._shard_ids = (
            np.unique(shards, return_inverse=True) if len(shards) else ([], shards)
        )
        self._shard_ids = np.asarray(self._shard_ids, dtype=np.int64)
        self._offsets = self.index["offset"].to_numpy(dtype=np.int64)
        xs = self.index[LANDMARK_X].to_numpy(dtype=np.float32)
        ys = self.index[LANDMARK_Y].to_numpy(dtype=np.float32)
        self._landmarks = np.stack([xs, ys], axis=-1)  # (N, 68, 2)
        columns = [au_column(code) for code in self.aus]
        self._intensities = self.index[columns].to_numpy(dtype=np.float32)  # (N, A)
        self._subjects = self.index["subject"].astype(str).to_numpy()
        self._sequences = self.index["sequence"].astype(str).to_numpy()
        self._frame_numbers = self.index["frame"].to_numpy(dtype=np.int64)
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.index)

    def _shard(self, shard_id: int) -> np.ndarray:
        mapped = self._maps.get(shard_id)
        if mapped is None:
            mapped = np.load(self.path / str(self._shard_names[shard_id]), mmap_mode="r")
            self._maps[shard_id] = mapped
        return mapped

    def image(self, i: int) -> np.ndarray:
        """The (S, S, 3) uint8 RGB crop of item ``i`` (a private, writable copy)."""
        return np.array(self._shard(int(self._shard_ids[i]))[self._offsets[i]])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for a cache of {len(self)} faces")
        i = int(i) % len(self)
        return {
            "image": self.image(i),
            "landmarks": self._landmarks[i].copy(),
            "intensities": self._intensities[i].copy(),
            "subject": str(self._subjects[i]),
            "sequence": str(self._sequences[i]),
            "frame": int(self._frame_numbers[i]),
        }

    def subset(self, selection: np.ndarray | Sequence[int] | pd.Series) -> PreparedCache:
        """A view on some items (a boolean mask over ``len(self)`` items, or item numbers), e.g. one fold."""
        selection = np.asarray(selection)
        if selection.dtype == bool:
            if len(selection) != len(self):
                raise ValueError(f"mask has {len(selection)} entries for {len(self)} items")
            rows = self.index[selection]
        else:
            rows = self.index.iloc[selection.astype(np.int64)]
        view = object.__new__(PreparedCache)
        view.path, view.meta, view.aus, view.frames = self.path, self.meta, self.aus, self.frames
        view._set_rows(rows)
        return view

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are per process: a DataLoader worker re-opens what it touches.
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def __repr__(self) -> str:
        return (
            f"PreparedCache({str(self.path)!r}: {len(self)} faces, "
            f"{self.index['subject'].nunique()} subjects, "
            f"AUs {list(self.aus)})"
        )


class ConcatCache:
    """Several caches read as one: items of the first, then of the second, ... (training on mixed data).

    The AU vector is the first cache's; a later cache's AUs are reordered to it and an AU it lacks is NaN
    (unknown), so the masked loss ignores it there. ``.index`` concatenates the caches' indexes with a
    ``cache`` column (0, 1, ...) and the subject names prefixed by it when they would collide, so a
    subject-exclusive split never joins two caches' people.
    """

    def __init__(self, caches: Sequence[PreparedCache]) -> None:
        if not caches:
            raise ValueError("ConcatCache needs at least one cache")
        self.caches = list(caches)
        self.aus: tuple[int, ...] = tuple(caches[0].aus)
        self.starts = np.cumsum([0] + [len(c) for c in caches])
        self._columns = []
        for cache in caches:
            position = {int(code): i for i, code in enumerate(cache.aus)}
            self._columns.append(
                np.asarray([position.get(int(code), -1) for code in self.aus], dtype=np.int64)
            )
        parts = []
        for number, cache in enumerate(caches):
            part = cache.index.copy()
            part["cache"] = number
            if number:
                part["subject"] = f"{number}:" + part["subject"].astype(str)
            parts.append(part)
        self.index = pd.concat(parts, ignore_index=True)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} faces")
        i = int(i) % len(self)
        number = int(np.searchsorted(self.starts, i, side="right") - 1)
        item = self.caches[number][i - int(self.starts[number])]
        columns = self._columns[number]
        intensities = np.where(columns >= 0, item["intensities"][np.maximum(columns, 0)], np.nan)
        item["intensities"] = intensities.astype(np.float32)
        return item

    def __repr__(self) -> str:
        return f"ConcatCache({', '.join(repr(c) for c in self.caches)})"
