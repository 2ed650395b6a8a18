"""A prepared cache's part files: one committed sequence each, in one fixed schema, read back as the index.

Why parts: a sequence is committed when ``parts/<key>.parquet`` is renamed into place, after its shards and
its ``parts/<key>.problems.json``; that rename is what makes ``facskit prepare`` resumable. The final
``index.parquet`` is the parts concatenated in the dataset's sequence order, so every part must have the
same columns and dtypes whoever wrote it (:func:`part_columns`). A worker writes its part
(:func:`commit_part`); the parent reads the committed ones back (:func:`assemble_index`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from facskit.aus import au_column
from facskit.data.cache import (
    LANDMARK_X,
    LANDMARK_Y,
    PART_DIR,
    POSE_COLUMNS,
    write_json_atomic,
    write_parquet_atomic,
)
from facskit.data.index import LANDMARKS_COLUMN, DatasetIndex, Problem
from facskit.errors import DatasetError


def part_path(out: Path, key: str) -> Path:
    """The part file of sequence ``key`` in the cache ``out``; it exists once the sequence is committed."""
    return out / PART_DIR / f"{key}.parquet"


def part_problems_path(out: Path, key: str) -> Path:
    """The problems sequence ``key`` reported (unreadable frames or landmark files), next to its part."""
    return out / PART_DIR / f"{key}.problems.json"


def part_columns(part: pd.DataFrame, aus: tuple[int, ...]) -> pd.DataFrame:
    """Fixed column order and dtypes so that parts concatenate and compare identically."""
    columns = (
        ["subject", "sequence", "frame", "source", "source_frame"]
        + [au_column(a) for a in aus]
        + ["shard", "offset"]
        + LANDMARK_X
        + LANDMARK_Y
        + POSE_COLUMNS
        + ["face_detected", "landmark_source", "skip_reason"]
    )
    part = part[columns].copy()
    for name in [au_column(a) for a in aus] + LANDMARK_X + LANDMARK_Y + POSE_COLUMNS:
        part[name] = part[name].astype(np.float32)
    for name in ("frame", "source_frame", "offset"):
        part[name] = part[name].astype(np.int64)
    for name in ("subject", "sequence", "source", "shard", "landmark_source", "skip_reason"):
        part[name] = part[name].astype(str)
    return part


def empty_part(index: DatasetIndex) -> pd.DataFrame:
    """A part with no rows and every column: the index of a dataset where no sequence was committed."""
    part = index.frames.drop(columns=[LANDMARKS_COLUMN], errors="ignore").iloc[:0].copy()
    for name in ["shard", "landmark_source", "skip_reason"]:
        part[name] = pd.Series([], dtype=object)
    for name in ["offset"]:
        part[name] = pd.Series([], dtype=np.int64)
    for name in LANDMARK_X + LANDMARK_Y + POSE_COLUMNS:
        part[name] = pd.Series([], dtype=np.float32)
    part["face_detected"] = pd.Series([], dtype=bool)
    return part


def commit_part(
    out: Path, key: str, part: pd.DataFrame, problems: list[Problem], aus: tuple[int, ...]
) -> None:
    """Commit one sequence: its problems file, then its part file (the rename that marks it done)."""
    write_json_atomic({"problems": [asdict(p) for p in problems]}, part_problems_path(out, key))
    write_parquet_atomic(part_columns(part, aus), part_path(out, key))


def assemble_index(out: Path, keys: Iterable[str], index: DatasetIndex) -> tuple[pd.DataFrame, list[Problem]]:
    """The cache's index, the committed parts of ``keys`` in that order, and every problem: the dataset
    reader's first, then each committed sequence's. Sequences not committed are left out."""
    parts = []
    problems: list[Problem] = list(index.problems)
    for key in keys:
        path = part_path(out, key)
        if not path.is_file():
            continue
        parts.append(read_part(path))
        problems_path = part_problems_path(out, key)
        if problems_path.is_file():
            problems.extend(read_part_problems(problems_path))
    table = pd.concat(parts, ignore_index=True) if parts else part_columns(empty_part(index), index.aus)
    return table, problems


def damaged_part(path: Path, error: BaseException) -> DatasetError:
    """The one-line error for a committed file that no longer reads, with the way to redo its sequence."""
    reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
    return DatasetError(
        f"{path}: damaged part file ({type(error).__name__}: {reason}); delete it and run prepare again to "
        "redo that sequence"
    )


def read_part(path: Path) -> pd.DataFrame:
    """A committed sequence's index rows. Parts are written atomically, so a damaged one was damaged
    afterwards (disk, a hand edit); it is named with the way to redo it, not a pyarrow traceback."""
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise damaged_part(path, error) from None


def read_part_problems(path: Path) -> list[Problem]:
    """The problems a committed sequence reported (its ``.problems.json``)."""
    try:
        return [Problem(**p) for p in json.loads(path.read_text())["problems"]]
    except (
        ValueError,
        KeyError,
        TypeError,
    ) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise damaged_part(path, error) from None
