"""The result of a still image written from arrays: what ``facskit analyze`` does for each photo.

A video's rows go through resumable parts and pandas (:mod:`facskit.analyze.assemble`). A still has a frame
per page and a row per face, so resuming it makes no sense, and pandas' fixed cost per call on a table of
~180 columns and a few rows was most of the time of a folder of photos: 813 portraits took 134 s, of which
the faces were ~30 s (parts 61 s, summary 84 s, casts, thresholds and the CSV writer most of the rest, in a
profile; benchmarks/results/speed_2026-12-03.md). Here the same rows are built as numpy columns, cast to
the result schema, thresholded, and written by :mod:`facskit.analyze.csv_text` (pandas' bytes), with the
per-face summary in the sidecar. tests/analyze/test_still_result.py holds the file to what the table path
writes for the same image.

Only plain results take this path: CSV, facskit column names, no smoothing or calibration (which need a
face's whole series). The others go through the table path, as videos do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facskit.analyze.csv_text import write_csv
from facskit.analyze.pipeline import FrameResult, raw_columns
from facskit.analyze.schema import occurrence_column, result_columns, result_dtypes
from facskit.analyze.sidecar import write_csv_sidecar
from facskit.aus import au_column
from facskit.io.atomic import atomic_write

# Key columns of the summary, before each AU's mean, max and % active.
SUMMARY_KEYS = ("file", "face_id", "frames")


def still_columns(
    frames: Sequence[FrameResult], aus: Sequence[int], thresholds: Mapping[int, float]
) -> dict[str, Any]:
    """The finished result columns of ``frames`` in schema order and dtypes (see
    :func:`facskit.analyze.schema.result_dtypes`), occurrence set from the thresholds: active when the
    intensity is at or above the AU's threshold, None (NA) without a face."""
    raw = raw_columns(frames, aus)
    dtypes = result_dtypes(aus)
    out: dict[str, Any] = {}
    for name in result_columns(aus):
        dtype = dtypes[name]
        if name in raw:
            out[name] = list(raw[name]) if dtype == "string" else np.asarray(raw[name]).astype(dtype)
    for code in aus:
        intensity = out[au_column(code)]
        active = (intensity >= thresholds[code]).astype(object)
        active[np.isnan(intensity)] = None
        out[occurrence_column(code)] = active
    return out


def still_summary(columns: Mapping[str, Any], aus: Sequence[int]) -> dict[str, Any]:
    """The summary table of the result ``columns`` (:func:`facskit.analyze.summary.summarize`'s rows: per
    file and face, frames with the face and per AU the mean, max and % of frames active), as
    ``{"columns": [...], "rows": [[...], ...]}``."""
    names = list(SUMMARY_KEYS)
    for code in aus:
        names += [f"{au_column(code)}_mean", f"{au_column(code)}_max", f"{au_column(code)}_active"]
    detected = np.asarray(columns["face_detected"], dtype=bool)
    files = [f for f, d in zip(columns["file"], detected, strict=True) if d]
    face_ids = np.asarray(columns["face_id"])[detected]
    rows = []
    for file, face_id in sorted(set(zip(files, face_ids.tolist(), strict=True))):
        mine = np.array([f == file for f in files]) & (face_ids == face_id)
        row: list[Any] = [file, int(face_id), int(mine.sum())]
        for code in aus:
            values = np.asarray(columns[au_column(code)])[detected][mine].astype(np.float64)
            active = np.array(
                [np.nan if a is None else float(a) for a in columns[occurrence_column(code)][detected][mine]]
            )
            row += [_nanmean(values), _nanmax(values), 100.0 * _nanmean(active)]
        rows.append(row)
    return {"columns": names, "rows": rows}


def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.sum() / len(kept)) if len(kept) else float("nan")


def _nanmax(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.max()) if len(kept) else float("nan")


def write_still_result(
    target: Path, columns: Mapping[str, Any], attrs: Mapping[str, Any], aus: Sequence[int]
) -> int:
    """Write ``columns`` to the CSV ``target`` and its sidecar (attrs, size and summary), each atomically,
    the sidecar last; returns the rows written."""
    atomic_write(target, lambda tmp: write_csv(tmp, columns))
    write_csv_sidecar(target, attrs, still_summary(columns, aus))
    return len(columns["frame"])


__all__ = ["still_columns", "still_summary", "write_still_result"]
