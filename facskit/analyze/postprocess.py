"""Optional steps applied to a finished per-file result: temporal smoothing and per-person calibration.

Both are off by default and both are recorded in ``.attrs`` so that a number in a CSV can always be traced
to what was done to it (OpenFace applies a hidden person calibration; users cannot switch it off or see it).
They need a whole file's intensities per face (a centred window, a percentile), after the network and before
the occurrence thresholds, which are applied last; ``facskit analyze`` gives them only the few columns they
read (:func:`adjust_intensities`), never a whole file's rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from facskit.aus import au_column
from facskit.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from facskit.analyze.detector import Detector

SmoothingMethod = Literal["median", "mean"]
# Low percentile of a face's intensities taken as its neutral baseline (a face is neutral most of the time).
DEFAULT_BASELINE_PERCENTILE = 5.0


@dataclass(frozen=True)
class Smoothing:
    """Centred moving median (robust to single-frame spikes) or mean over ``window`` analysed frames, per
    face. Frames without the face are skipped, not treated as zero."""

    window: int
    method: SmoothingMethod = "median"

    def __post_init__(self) -> None:
        if self.window < 1:
            raise UsageError(f"smoothing window must be >= 1 frame, not {self.window}")
        if self.method not in ("median", "mean"):
            raise UsageError(f"smoothing method must be 'median' or 'mean', not {self.method!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "method": self.method}


@dataclass(frozen=True)
class Calibration:
    """Subtract each face's ``percentile``-th intensity per AU (its resting face), clipping at 0."""

    percentile: float = DEFAULT_BASELINE_PERCENTILE

    def __post_init__(self) -> None:
        if not 0.0 <= self.percentile <= 100.0:
            raise UsageError(f"calibration percentile must be in [0, 100], not {self.percentile}")


def as_smoothing(value: Smoothing | int | None) -> Smoothing | None:
    """``None``/0/1 -> no smoothing; an int -> a median over that many frames."""
    if value is None or isinstance(value, Smoothing):
        return value
    return None if int(value) <= 1 else Smoothing(int(value))


def as_calibration(value: Calibration | bool | float | None) -> Calibration | None:
    """``None``/False -> off; True -> the default percentile; a number -> that percentile."""
    if value is None or value is False:
        return None
    if isinstance(value, Calibration):
        return value
    if value is True:
        return Calibration()
    return Calibration(float(value))


def smooth(result: pd.DataFrame, aus: Sequence[int], smoothing: Smoothing) -> None:
    """Smooth the intensity columns in place, per (file, face_id), over the rows with a detected face."""
    columns = [au_column(a) for a in aus]
    faces = result[result["face_detected"].astype(bool)]
    for _, group in faces.groupby(["file", "face_id"], sort=False, observed=True):
        values = group.sort_values("frame")[columns].astype("float64")
        rolling = values.rolling(smoothing.window, center=True, min_periods=1)
        smoothed = rolling.median() if smoothing.method == "median" else rolling.mean()
        result.loc[smoothed.index, columns] = smoothed.astype("float32")


def calibrate(result: pd.DataFrame, aus: Sequence[int], calibration: Calibration) -> dict[str, Any]:
    """Subtract each face's baseline in place; returns ``{"percentile", "baselines": {file: {face_id: {AU:
    value}}}}`` for ``.attrs`` (keys are strings so they survive JSON)."""
    columns = [au_column(a) for a in aus]
    baselines: dict[str, dict[str, dict[str, float]]] = {}
    faces = result[result["face_detected"].astype(bool)]
    for (file, face_id), group in faces.groupby(["file", "face_id"], sort=True, observed=True):
        values = group[columns].astype("float64")
        base = values.quantile(calibration.percentile / 100.0)
        result.loc[group.index, columns] = (values - base).clip(lower=0.0).astype("float32")
        baselines.setdefault(str(file), {})[str(int(face_id))] = {
            c: round(float(base[c]), 6) for c in columns
        }
    return {"percentile": calibration.percentile, "baselines": baselines}


def adjust_intensities(
    result: pd.DataFrame,
    aus: Sequence[int],
    smoothing: Smoothing | None = None,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """Smoothing, then calibration, of the intensity columns in place; returns the attrs they add.

    Only the columns ``file, frame, face_id, face_detected`` and the intensities are read, so ``result`` may
    be just those columns of a whole file (what :mod:`facskit.analyze.assemble` passes: a few bytes per row)
    and the adjusted intensities copied into the full rows afterwards, part by part.
    """
    attrs: dict[str, Any] = {"smoothing": smoothing.to_dict() if smoothing else None}
    if smoothing is not None:
        smooth(result, aus, smoothing)
    attrs["calibration"] = calibrate(result, aus, calibration) if calibration is not None else None
    return attrs


def finalize(
    result: pd.DataFrame,
    aus: Sequence[int],
    thresholds: Mapping[int, float],
    smoothing: Smoothing | None = None,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """Smoothing, then calibration, then occurrence thresholds, in place. Returns the attrs they add."""
    from facskit.analyze.results import apply_thresholds

    attrs = adjust_intensities(result, aus, smoothing, calibration)
    apply_thresholds(result, thresholds)
    attrs["thresholds"] = threshold_attrs(thresholds)
    return attrs


def threshold_attrs(thresholds: Mapping[int, float]) -> dict[str, float]:
    """``{"AU06": 2.0, ...}``: how the thresholds are recorded in ``.attrs``."""
    return {au_column(a): float(t) for a, t in thresholds.items()}


def result_attrs(
    detector: Detector,
    added: Mapping[str, Any],
    errors: list[dict[str, str]],
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The attrs of a finished result: the detector's, what post-processing ``added`` (smoothing and
    calibration records), the thresholds, the decode ``errors`` and the provenance, as plain JSON types
    (what a file keeps)."""
    attrs = detector.attrs()
    attrs.update(added)
    attrs["thresholds"] = threshold_attrs(detector.thresholds)
    attrs["errors"] = errors
    attrs.update(provenance or {})
    return json.loads(json.dumps(attrs))
