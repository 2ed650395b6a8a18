"""The parts of an unfinished input: raw rows written a chunk of frames at a time under
``.parts/<name>/``, each recording the input and options that made it, so that a killed run resumes after
its last part (:func:`resume_frame`) and never mixes parts of another input or other options. Also the
optional saved heatmaps (``<name>.heatmaps/``).
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facskit.analyze.pipeline import FrameResult, rows_from_frames
from facskit.errors import first_line
from facskit.io.atomic import atomic_write

NEXT_FRAME_KEY = b"facskit.next_frame"

PROVENANCE_KEY = b"facskit.provenance"  # a part's JSON {"input": ..., "options": ...}


def part_files(parts_dir: Path) -> list[Path]:
    return sorted(parts_dir.glob("part-*.parquet")) if parts_dir.is_dir() else []


def part_first_frame(part: Path) -> int:
    return int(part.stem.split("-", 1)[1])


def part_provenance(part: Path) -> dict[str, Any] | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with contextlib.suppress(pa.ArrowException, OSError, ValueError):
        raw = (pq.read_schema(part).metadata or {}).get(PROVENANCE_KEY)
        value = json.loads(raw) if raw else None
        return value if isinstance(value, dict) else None
    return None


def resume_frame(
    parts_dir: Path, provenance: Mapping[str, Any], label: str, log: Callable[[str], None]
) -> int:
    """The frame after the last usable part (0 when there is none), keeping only parts that continue one
    another from frame 0 and were made from this input with these options.

    Parts of another input or other options (an older run with another backend) are all removed: the
    input starts over cleanly rather than mixing. A part that is unreadable, or overlaps the one before it,
    is removed with every part after it, so no frame can be written twice.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = part_files(parts_dir)
    start = 0
    for k, part in enumerate(parts):
        try:
            metadata = pq.read_schema(part).metadata or {}
            recorded = json.loads(metadata.get(PROVENANCE_KEY, b"null"))
            next_frame = int(metadata[NEXT_FRAME_KEY])
            first = part_first_frame(part)
        except (pa.ArrowException, OSError, ValueError, KeyError) as error:
            log(f"{label}: {part.name} is unreadable ({first_line(error)}); it and later parts are redone")
            remove_files(parts[k:])
            return start
        if recorded != json.loads(json.dumps(provenance)):
            why = provenance_difference(recorded, provenance)
            log(f"{label}: its partial result was made {why}; starting it over")
            remove_files(parts)
            return 0
        if first < start or next_frame <= first:
            log(f"{label}: {part.name} overlaps the part before it; it and later parts are redone")
            remove_files(parts[k:])
            return start
        start = next_frame
    return start


def provenance_difference(recorded: Any, provenance: Mapping[str, Any]) -> str:
    if not isinstance(recorded, dict):
        return "by an older facskit (no record of its input and options)"
    if recorded.get("input") != provenance["input"]:
        return "from an earlier version of the input"
    before, now = recorded.get("options") or {}, provenance["options"]
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    return "with other options (" + ", ".join(f"{k}: {brief(before.get(k))}" for k in changed) + ")"


def brief(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def remove_files(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def drop_heatmaps_from(folder: Path, start: int) -> None:
    """Remove saved heatmap chunks of frames from ``start`` on: they belong to work being redone now (a
    chunk's heatmaps are written just before its part, so a kill between the two leaves one behind)."""
    if not folder.is_dir():
        return
    for chunk in folder.glob("chunk-*.npz"):
        with contextlib.suppress(ValueError):
            if int(chunk.stem.split("-", 1)[1]) >= start:
                chunk.unlink(missing_ok=True)


def write_part(
    parts_dir: Path, chunk: list[FrameResult], aus: Sequence[int], provenance: Mapping[str, Any]
) -> Path:
    """One chunk's raw rows; its metadata records the next frame (where a resume starts) and what made it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = rows_from_frames(chunk, aus)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[NEXT_FRAME_KEY] = str(chunk[-1].index + 1).encode()
    metadata[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True).encode()
    table = table.replace_schema_metadata(metadata)
    path = parts_dir / f"part-{chunk[0].index:09d}.parquet"
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def write_heatmaps(folder: Path, chunk: list[FrameResult]) -> None:
    """One compressed ``.npz`` per chunk: ``frame`` (N,), ``face_id`` (N,), ``heatmaps`` (N, P, h, w) float16
    (crop-aligned, 0-5 scale) and ``matrix`` (N, 2, 3) frame -> crop, to map them back with
    :func:`facskit.align.heatmaps_to_frame`."""
    faces = [(r.index, f) for r in chunk for f in r.faces if f.heatmaps is not None]
    if not faces:
        return
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "frame": np.array([i for i, _ in faces], dtype=np.int64),
        "face_id": np.array([f.face_id for _, f in faces], dtype=np.int64),
        "heatmaps": np.stack([f.heatmaps for _, f in faces]).astype(np.float16),  # (N, P, h, w)
        "matrix": np.stack([f.matrix for _, f in faces]),  # (N, 2, 3)
    }
    path = folder / f"chunk-{chunk[0].index:09d}.npz"

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(handle, **arrays)

    atomic_write(path, write)


def remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.ENOENT, errno.EEXIST):
            raise
