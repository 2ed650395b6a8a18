"""The result of an analysis: ``AUResult``, a DataFrame with one row per face per frame, one column schema
(:mod:`facskit.analyze.schema`) and its metadata in ``.attrs``.

The schema is applied on every construction and every read, so a result that went through CSV or Parquet
(:mod:`facskit.analyze.result_files`) comes back with the same dtypes and the same ``.attrs``. Peers lose
this (OpenFace's CSV headers carry leading spaces, Py-Feat's metadata vanishes on save), which is why the
round trip is tested.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from facskit.analyze.schema import aus_from_columns, conform, occurrence_column, result_columns
from facskit.aus import au_column

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


class AUResult(pd.DataFrame):
    """Per-frame AU intensities: a pandas DataFrame (one row per face per frame) with a few helpers.

    Columns: ``file, frame, timestamp, face_id, face_detected, x, y, w, h, score, yaw, pitch, roll``,
    landmarks ``x_0..x_67, y_0..y_67`` (frame pixels), one intensity column per AU (``AU06``, 0-5) and one
    occurrence column (``AU06_c``). A frame without a face is a row with ``face_detected=False`` and NaN
    intensities, never a gap. ``.attrs`` holds the model name and version, the AU list, the alignment, the
    thresholds and any smoothing or calibration applied. Being a DataFrame, it filters, groups and saves like
    one; :func:`write_result` / :func:`read_result` keep the attrs through CSV and Parquet.
    """

    _metadata: list[str] = []

    @property
    def _constructor(self) -> Callable[..., AUResult]:
        return AUResult

    @property
    def aus(self) -> tuple[int, ...]:
        """AU codes of the intensity columns, in column order (``(6, 10, 12, 14, 17)``)."""
        if "aus" in self.attrs:
            return tuple(int(a) for a in self.attrs["aus"])
        return aus_from_columns(self.columns)

    @property
    def au_columns(self) -> list[str]:
        """Intensity column names (``["AU06", ...]``)."""
        return [au_column(a) for a in self.aus]

    def summary(self) -> pd.DataFrame:
        """Per file and face: frames seen, and per AU the mean and max intensity and the % of frames active.

        Only rows with a detected face count; "active" is the occurrence column (threshold applied).
        """
        from facskit.analyze.summary import summarize

        return summarize(self)

    def plot_timeseries(self, face_id: int | None = None, aus: Sequence[int] | None = None) -> Figure:
        """A matplotlib Figure of AU intensity over time, one panel per face (or just ``face_id``)."""
        from facskit.analyze.plots import plot_timeseries

        return plot_timeseries(self, face_id=face_id, aus=aus)

    def plot_overlay(self, frame: int, file: str | None = None, image: np.ndarray | None = None) -> Figure:
        """The frame with every face's box, landmarks and AU points (coloured by intensity) and a bar chart.

        The image is decoded again from ``file`` (the only file of the result by default) unless given.
        """
        from facskit.analyze.plots import plot_overlay

        return plot_overlay(self, frame=frame, file=file, image=image)


def empty_result(aus: Sequence[int], attrs: Mapping[str, Any] | None = None) -> AUResult:
    """A result with no rows but the full schema (e.g. an image that failed to decode)."""
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in result_columns(aus)})
    out = AUResult(conform(frame, aus))
    out.attrs.update(dict(attrs or {}))
    return out


def as_result(frame: pd.DataFrame, attrs: Mapping[str, Any]) -> AUResult:
    """Wrap ``frame`` (already in the result schema) as an :class:`AUResult` with ``attrs``."""
    aus = tuple(int(a) for a in attrs["aus"])
    out = AUResult(conform(frame, aus))
    out.attrs.clear()
    out.attrs.update(json.loads(json.dumps(dict(attrs))))  # plain JSON types only: what survives a file
    return out


def concat_results(results: Sequence[AUResult], attrs: Mapping[str, Any]) -> AUResult:
    """Concatenate results that share a schema (e.g. several inputs of one call) under one set of attrs."""
    aus = tuple(int(a) for a in attrs["aus"])
    if not results:
        return empty_result(aus, attrs)
    frames = [pd.DataFrame(r) for r in results if len(r)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=result_columns(aus))
    return as_result(frame, attrs)


def apply_thresholds(result: pd.DataFrame, thresholds: Mapping[int, float]) -> None:
    """Set each ``AU.._c`` from its intensity, in place: active when intensity >= threshold, NA without a
    face."""
    for code, value in thresholds.items():
        intensity = result[au_column(code)]
        occurrence = (intensity >= value).astype("boolean")
        occurrence[intensity.isna()] = pd.NA
        result[occurrence_column(code)] = occurrence
