"""Helpers several test modules share: hand-made inputs (videos, dataset layouts, prepared caches) and a
simulated kill of `facskit analyze`. Plain functions, imported as ``from helpers import ...`` from any folder
of tests/ (pyproject's pytest ``pythonpath`` puts tests/ on ``sys.path``); fixtures are in ``conftest.py``."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd

from facskit.aus import DISFA_AUS
from facskit.data.cache import (
    CACHE_FORMAT,
    CACHE_VERSION,
    INDEX_FILE,
    LANDMARK_X,
    LANDMARK_Y,
    META_FILE,
    SHARD_DIR,
    ShardWriter,
    write_json_atomic,
    write_parquet_atomic,
)

# --- media and dataset layouts ------------------------------------------------------------------------------


def write_video(path: Path, n_frames: int, size: tuple[int, int] = (64, 48)) -> None:
    """A small MPEG-4 AVI whose frame i is uniformly grey level 10 * i."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=20)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n_frames):
            image = np.full((size[1], size[0], 3), 10 * i % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def disfa_value(subject: int, code: int, frame: int) -> int:
    """The intensity :func:`make_disfa` labels a frame with."""
    return (subject + code + frame) % 6


def make_disfa(root: Path, subjects: tuple[int, ...] = (1, 2), n_frames: int = 10) -> Path:
    """A DISFA layout: per subject SN<s>, a grey left-camera video of ``n_frames`` frames and one label
    file per DISFA AU, frame f of AU ``code`` labelled ``disfa_value(s, code, f)``."""
    for s in subjects:
        name = f"SN{s:03d}"
        write_video(root / "Videos_LeftCamera" / f"LeftVideo{name}_comp.avi", n_frames)
        label_dir = root / "ActionUnit_Labels" / name
        label_dir.mkdir(parents=True, exist_ok=True)
        for code in DISFA_AUS:
            lines = [f"{f},{disfa_value(s, code, f)}" for f in range(1, n_frames + 1)]
            (label_dir / f"{name}_au{code}.txt").write_text("\n".join(lines) + "\n")
    return root


def copy_of(source: Path, path: Path) -> Path:
    """``source`` copied to ``path``, its folder made: a test's input under the name the test is about."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, path)
    return path


# --- prepared caches ----------------------------------------------------------------------------------------


def write_prepared_cache(
    root: Path,
    faces: Iterable[tuple[str, dict[str, Any], np.ndarray | None, np.ndarray | None]],
    meta: dict[str, Any],
    shard_size: int,
) -> Path:
    """A prepared cache written by hand in the documented format (shards, index.parquet, meta.json), so
    it reads exactly like a ``facskit prepare`` output without running one.

    ``faces`` gives, frame by frame, ``(series, row, crop, landmarks)``: the shard series the crop goes
    to, the index row's own columns (subject, sequence, frame, AU columns, ...), the uint8 crop (None: a
    frame skipped, whose ``row`` names its ``skip_reason``) and its (68, 2) landmarks (None: unknown).
    ``meta`` is meta.json less its format and version (``aus`` at least)."""
    (root / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    writers: dict[str, ShardWriter] = {}
    rows = []
    for series, fields, crop, landmarks in faces:
        row = dict(fields)
        if crop is None:
            row.update(shard="", offset=-1)
        else:
            if series not in writers:
                writers[series] = ShardWriter(root / SHARD_DIR, series, crop.shape, shard_size=shard_size)
            row["shard"], row["offset"] = writers[series].append(crop)
        row.setdefault("skip_reason", "")
        points = np.full((len(LANDMARK_X), 2), np.nan) if landmarks is None else landmarks
        row.update({name: points[i, 0] for i, name in enumerate(LANDMARK_X)})
        row.update({name: points[i, 1] for i, name in enumerate(LANDMARK_Y)})
        rows.append(row)
    for writer in writers.values():
        writer.close()
    write_json_atomic({"format": CACHE_FORMAT, "version": CACHE_VERSION, **meta}, root / META_FILE)
    write_parquet_atomic(pd.DataFrame(rows), root / INDEX_FILE)
    return root


# --- analyze ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def killed_after_parts(parts: int, on_kill: Callable[[tuple, int], None] | None = None) -> Iterator[None]:
    """Within it, `facskit analyze` is interrupted (KeyboardInterrupt, as a kill or Ctrl-C) when it is about
    to write its part number ``parts + 1``: ``parts`` parts are written, the run exits 130. ``on_kill``
    is called first with the part writer's arguments and the part's number (to leave what a SIGKILL
    mid-write leaves)."""
    from facskit.analyze import runner

    write_part, calls = runner.write_part, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) > parts:
            if on_kill is not None:
                on_kill(args, len(calls))
            raise KeyboardInterrupt
        return write_part(*args, **kwargs)

    runner.write_part = killed
    try:
        yield
    finally:
        runner.write_part = write_part
