"""Evaluate a checkpoint on a prepared cache with the papers' protocol, and report it their way.

Protocol (DESIGN.md section 4; both papers): intensity metrics ICC(3,1), MAE and PCC on the 0-5 scale,
occurrence F1 with occurrence = intensity >= 2, per AU and their mean, computed on the frames of the
subjects the model never saw. Which subjects those are comes from the run's training config (the held-out
fold of a subject-exclusive k-fold split with its seed, or the FERA 2015 development subjects), so
``facskit evaluate RUN --data CACHE`` tests exactly the fold that training validated on.

Outputs:

* the metrics as JSON: ``{"per_au": {"AU06": {"icc", "mae", "pcc", "f1", "n"}}, "mean": {...},
  "n_frames", "n_subjects", "protocol": {...}, "notes": [...]}`` (undefined values are ``null``);
* a markdown table laid out like the papers' (AUs as columns, one row per metric, Mean column last);
* the per-frame predictions (Parquet), which ``crossval`` pools and anyone can re-score.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from facskit.aus import OCCURRENCE_THRESHOLD, au_column, parse_au
from facskit.errors import DatasetError, UsageError
from facskit.eval.predict import (
    ID_COLUMNS,
    ResolvedModel,
    predict_cache,
    resolve_checkpoint,
    true_column,
)
from facskit.io.atomic import atomic_write, atomic_write_json

__all__ = [
    "REPORTED_METRICS",
    "EvaluationInput",
    "EvaluationResult",
    "Split",
    "FoldProtocol",
    "evaluate",
    "load_evaluation",
    "metrics_from_predictions",
    "open_cache",
    "metrics_table_markdown",
    "prediction_aus",
    "read_predictions",
    "select_frames",
    "write_json",
    "write_predictions",
]

Split = Literal["test", "train", "all"]
# (JSON key, au_table column, row label, decimals) of the metrics reported, in the papers' order.
REPORTED_METRICS: tuple[tuple[str, str, str, int], ...] = (
    ("icc", "ICC", "ICC", 2),
    ("mae", "MAE", "MAE", 2),
    ("pcc", "PCC", "PCC", 2),
    ("f1", "F1", "F1", 2),
)


@dataclass(frozen=True)
class FoldProtocol:
    """Which frames are held out: ``split`` of the run ("kfold", "fera2015", "none"), fold, k and seed."""

    split: str = "kfold"
    fold: int | None = None
    folds: int = 3
    seed: int = 0

    def describe(self) -> str:
        if self.split == "fera2015":
            return "FERA 2015 development subjects"
        if self.split == "none":
            return "no held-out subjects"
        return f"fold {self.fold} of {self.folds} subject-exclusive folds (seed {self.seed})"


@dataclass
class EvaluationResult:
    """What :func:`evaluate` returns: metrics (the JSON document), predictions, and the table as text."""

    metrics: dict[str, Any]
    predictions: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        return metrics_table_markdown(self.metrics)


# --- frame selection ---------------------------------------------------------------------------------------


def _protocol_from_config(config: dict[str, Any] | None) -> FoldProtocol:
    data = (config or {}).get("data", {}) or {}
    try:
        return FoldProtocol(
            split=str(data.get("split", "kfold")),
            fold=int(data["fold"]) if config is not None and data.get("fold") is not None else None,
            folds=int(data.get("folds", 3)),
            seed=int(data.get("fold_seed", 0)),
        )
    except (AttributeError, TypeError, ValueError, OverflowError):  # a hand-edited or damaged config
        raise UsageError(
            f"the run's config has no usable data section (split, fold, folds, fold_seed): {data!r:.120}"
        ) from None


def select_frames(index: pd.DataFrame, protocol: FoldProtocol, split: Split) -> np.ndarray:
    """Boolean mask over ``index`` rows: the held-out (``test``), training (``train``) or ``all`` frames.

    Uses the same functions as training (``facskit.data.folds``), so the test frames are exactly the ones
    the run validated on (before its ``max_val_frames`` cap, which evaluation does not apply).
    """
    from facskit.data.folds import fera2015_split, fold_split

    if split == "all":
        return np.ones(len(index), dtype=bool)
    if split not in ("test", "train"):
        raise UsageError(f"unknown split {split!r}; choose test, train or all")
    if protocol.split == "none":
        raise UsageError("the run trained on every subject (data.split=none): only --split all is possible")
    if protocol.split == "fera2015":
        train, test = fera2015_split(index)
    else:
        if protocol.fold is None:
            raise UsageError(
                "which fold is held out is unknown (no run config with data.fold): pass --fold K, "
                "or --split all"
            )
        try:
            train, test = fold_split(index, protocol.folds, protocol.fold, protocol.seed)
        except ValueError as error:
            raise UsageError(str(error)) from None
    mask = test if split == "test" else train
    if not mask.any():
        raise DatasetError(f"no {split} frames in the cache for {protocol.describe()}")
    return np.asarray(mask, dtype=bool)


# --- metrics ------------------------------------------------------------------------------------------------


def prediction_aus(predictions: pd.DataFrame) -> list[int]:
    """The AU codes of a prediction table (every ``AUxx`` column with its ``AUxx_true`` twin), in order."""
    aus = []
    for column in predictions.columns:
        if column.startswith("AU") and not column.endswith("_true") and f"{column}_true" in predictions:
            aus.append(parse_au(column))
    return aus


def _finite_or_none(value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else None


def metrics_from_predictions(
    predictions: pd.DataFrame,
    aus: Sequence[int] | None = None,
    threshold: float = OCCURRENCE_THRESHOLD,
) -> dict[str, Any]:
    """The metrics JSON document (module docstring) of a prediction table, with ``facskit.metrics``.

    ``mean`` is the mean over AUs of each metric where it is defined, as the papers average their tables;
    an AU whose metric is undefined (no positive frame for F1) is named in ``notes``.
    """
    from facskit.metrics import au_table

    codes = list(aus) if aus is not None else prediction_aus(predictions)
    if not codes:
        raise UsageError("the predictions hold no AU columns (AUxx with AUxx_true)")
    names = [au_column(code) for code in codes]
    pred = predictions[names]
    true = predictions[[true_column(code) for code in codes]].set_axis(names, axis=1)
    subjects = predictions["subject"].astype(str).to_numpy() if "subject" in predictions else None
    table = au_table(pred, true, codes, subjects=subjects, threshold=threshold)
    per_au: dict[str, dict[str, Any]] = {}
    notes = []
    for name in names:
        row = table.loc[name]
        per_au[name] = {key: _finite_or_none(row[column]) for key, column, _, _ in REPORTED_METRICS}
        per_au[name]["n"] = int(row["n"])
        if row["note"]:
            notes.append(f"{name}: {row['note']}")
    mean = {key: _finite_or_none(table.loc["Mean", column]) for key, column, _, _ in REPORTED_METRICS}
    labelled = true.notna().any(axis=1).to_numpy()
    return {
        "per_au": per_au,
        "mean": mean,
        "n_frames": int(labelled.sum()),
        "n_subjects": int(predictions.loc[labelled, "subject"].nunique()) if subjects is not None else 0,
        "threshold": float(threshold),
        "notes": notes,
    }


def _format(value: Any, decimals: int) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"


def metrics_table_markdown(metrics: dict[str, Any], title: str | None = None) -> str:
    """The papers' layout: AUs as columns, rows ICC / MAE / PCC / F1, the Mean column last."""
    names = list(metrics["per_au"])
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines.append("| Metric | " + " | ".join(names) + " | Mean |")
    lines.append("|---|" + "---:|" * (len(names) + 1))
    for key, _, label, decimals in REPORTED_METRICS:
        cells = [_format(metrics["per_au"][name].get(key), decimals) for name in names]
        cells.append(_format(metrics["mean"].get(key), decimals))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    footer = f"{metrics.get('n_frames', 0)} frames, {metrics.get('n_subjects', 0)} subjects"
    if "threshold" in metrics:
        footer += f"; occurrence = intensity >= {metrics['threshold']:g}"
    lines += ["", footer]
    return "\n".join(lines) + "\n"


# --- files --------------------------------------------------------------------------------------------------


def write_json(document: dict[str, Any], path: str | Path) -> Path:
    """Write ``document`` as indented JSON, atomically; NaN is refused (strict JSON, read outside Python)."""
    return atomic_write_json(path, document, indent=2, allow_nan=False, parents=True)


def write_predictions(predictions: pd.DataFrame, path: str | Path) -> Path:
    """Per-frame predictions to Parquet (atomically; ``.csv`` suffix writes CSV instead)."""
    path = Path(path)
    table = predictions.copy()
    table.attrs = {}  # pandas would serialise attrs into the Parquet metadata; keep files plain
    if path.suffix.lower() == ".csv":
        return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False), parents=True)
    return atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False), parents=True)


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A prediction table written by :func:`write_predictions` (Parquet or CSV)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such predictions file")
    try:
        table = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as error:  # pyarrow and pandas raise many types for a damaged file
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise UsageError(f"{path}: unreadable predictions file ({reason})") from None
    missing = [c for c in ID_COLUMNS if c not in table]
    if missing or not prediction_aus(table):
        raise UsageError(
            f"{path}: not a facskit prediction table (needs {', '.join(ID_COLUMNS)}, AUxx, AUxx_true)"
        )
    return table


# --- the protocol -------------------------------------------------------------------------------------------


def open_cache(cache: Any) -> Any:
    """A ``PreparedCache`` from a folder path (a one-line error if it is missing); an open cache as is."""
    from facskit.data.cache import PreparedCache

    if isinstance(cache, str | os.PathLike):
        path = Path(cache)
        if not path.is_dir():
            raise DatasetError(f"{path}: no such prepared cache folder (run `facskit prepare` first)")
        return PreparedCache(path)
    return cache


@dataclass
class EvaluationInput:
    """A loaded model, the frames to evaluate it on and how they were chosen (shared by the protocols)."""

    model: Any  # facskit.models.AUModel in eval mode
    frames: Any  # the PreparedCache (or subset) of the selected frames
    cache: Any  # the whole cache
    resolved: ResolvedModel
    protocol: FoldProtocol
    split: Split

    def describe(self) -> dict[str, Any]:
        """The ``protocol`` record of a metrics document."""
        return {
            "checkpoint": str(self.resolved.checkpoint),
            "model": self.model.spec.name,
            "cache": str(getattr(self.cache, "path", "")),
            "split": self.split,
            "held_out": self.protocol.describe() if self.split != "all" else "every frame",
            "fold": self.protocol.fold,
            "folds": self.protocol.folds,
            "fold_seed": self.protocol.seed,
        }


def load_evaluation(
    model_path: str | Path | ResolvedModel,
    cache: Any,
    *,
    split: Split = "test",
    fold: int | None = None,
    folds: int | None = None,
) -> EvaluationInput:
    """Load the checkpoint of a run folder or file, open ``cache`` and select the frames of ``split``.

    ``fold``/``folds`` override the run's held-out fold (needed for a bare checkpoint without a training
    config); the fold seed and split kind come from the run's config (``config.yaml`` or the checkpoint's
    own copy).
    """
    from facskit.models.checkpoint import load_checkpoint

    resolved = model_path if isinstance(model_path, ResolvedModel) else resolve_checkpoint(model_path)
    cache = open_cache(cache)
    model, info = load_checkpoint(resolved.checkpoint)
    config = resolved.config
    if config is None:
        extra = info.get("extra") or {}
        config = extra.get("config") if isinstance(extra.get("config"), dict) else None
    protocol = _protocol_from_config(config)
    if fold is not None or folds is not None:
        protocol = FoldProtocol(
            split="kfold",
            fold=fold if fold is not None else protocol.fold,
            folds=folds if folds is not None else protocol.folds,
            seed=protocol.seed,
        )
    mask = select_frames(cache.index, protocol, split)
    frames = cache.subset(mask) if not mask.all() else cache
    return EvaluationInput(model, frames, cache, resolved, protocol, split)


def evaluate(
    model_path: str | Path | ResolvedModel,
    cache: Any,
    *,
    split: Split = "test",
    fold: int | None = None,
    folds: int | None = None,
    threshold: float = OCCURRENCE_THRESHOLD,
    batch_size: int = 32,
    device: str = "auto",
    workers: int = 0,
) -> EvaluationResult:
    """Evaluate a run folder or checkpoint on ``cache`` (a path or a ``PreparedCache``).

    ``split`` picks the held-out subjects (default), the training ones, or every frame; ``fold``/``folds``
    as in :func:`load_evaluation`.
    """
    job = load_evaluation(model_path, cache, split=split, fold=fold, folds=folds)
    predictions = predict_cache(job.model, job.frames, batch_size=batch_size, device=device, workers=workers)
    notes = [*job.resolved.notes, *predictions.attrs.get("notes", [])]
    metrics = metrics_from_predictions(predictions, threshold=threshold)
    metrics["notes"] = notes + metrics["notes"]
    metrics["protocol"] = {**job.describe(), "aus": prediction_aus(predictions)}
    return EvaluationResult(metrics=metrics, predictions=predictions, notes=notes)
