"""Subject-exclusive k-fold cross-validation: train and evaluate every fold, then pool.

The DISFA and BP4D protocols of both papers are 3-fold, subject-exclusive. :func:`crossval` runs, for
``k = 0 .. folds-1``, ``facskit.train.train`` with ``data.fold = k`` into ``OUT/fold<k>`` and evaluates that
fold's checkpoint on its held-out subjects (:func:`facskit.eval.evaluate.evaluate`), writing
``OUT/fold<k>/predictions.parquet`` and ``OUT/fold<k>/metrics.json``. A fold with both files is finished
and skipped on a rerun; an interrupted fold resumes its training from ``last.ckpt`` (the trainer's own
resume). Then:

* **pooled**: every fold's predictions concatenated (each frame predicted by the one model that did not
  see its subject) and scored once; this is the number most AU papers report for k-fold CV;
* **mean over folds**: each fold scored on its own, then averaged (with the spread across folds).

Each fold's *last* checkpoint is evaluated by default (``checkpoint="last"``). The trainer validates on the
held-out fold, and its ``best.ckpt`` is the epoch with the best ICC there; with k-fold CV that fold is the
test set, so picking the epoch on it would report a test-tuned number (``checkpoint="best"`` does so on
request, and the metrics say which one was used). With ``data.val_subjects=N`` among the overrides, each fold
validates on N subjects taken out of its training folds instead, and ``checkpoint="best"`` is a fair choice.

``OUT/metrics.json`` holds both (its top-level ``per_au``/``mean`` are the pooled ones, so ``facskit
compare`` reads it like any evaluation), ``OUT/report.md`` both tables, ``OUT/predictions.parquet`` the
pooled predictions with a ``fold`` column.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facskit.aus import OCCURRENCE_THRESHOLD
from facskit.errors import UsageError
from facskit.eval.evaluate import (
    REPORTED_METRICS,
    metrics_from_predictions,
    metrics_table_markdown,
    read_predictions,
    write_json,
    write_predictions,
)
from facskit.eval.predict import BEST_CHECKPOINT, LAST_CHECKPOINT

# Which checkpoint of a fold is evaluated (see the module doc: "best" is chosen on the test fold).
CHECKPOINTS = {"last": LAST_CHECKPOINT, "best": BEST_CHECKPOINT}

__all__ = ["CrossvalResult", "crossval", "fold_dir", "mean_over_folds"]

PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"


def fold_dir(out: str | Path, fold: int) -> Path:
    """The run folder of fold ``fold`` inside a cross-validation folder."""
    return Path(out) / f"fold{fold}"


def _fold_finished(directory: Path) -> bool:
    return (directory / PREDICTIONS_FILE).is_file() and (directory / METRICS_FILE).is_file()


@dataclass
class CrossvalResult:
    """The cross-validation document (``OUT/metrics.json``), pooled predictions and what ran."""

    metrics: dict[str, Any]
    predictions: pd.DataFrame
    trained_folds: list[int] = field(default_factory=list)  # folds trained or evaluated by this call
    skipped_folds: list[int] = field(default_factory=list)  # folds already finished before this call

    @property
    def markdown(self) -> str:
        return crossval_markdown(self.metrics)


def mean_over_folds(fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-AU and mean metrics averaged over folds (undefined values skipped), with their std across folds."""
    names: list[str] = []
    for metrics in fold_metrics:
        names += [n for n in metrics["per_au"] if n not in names]

    def stats(values: list[Any]) -> tuple[float | None, float | None]:
        finite = [float(v) for v in values if v is not None]
        if not finite:
            return None, None
        return float(np.mean(finite)), float(np.std(finite))

    per_au: dict[str, dict[str, Any]] = {}
    for name in names:
        per_au[name] = {}
        for key, *_ in REPORTED_METRICS:
            mean, _ = stats([m["per_au"].get(name, {}).get(key) for m in fold_metrics])
            per_au[name][key] = mean
        per_au[name]["n"] = int(sum(m["per_au"].get(name, {}).get("n", 0) for m in fold_metrics))
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for key, *_ in REPORTED_METRICS:
        mean[key], std[key] = stats([m["mean"].get(key) for m in fold_metrics])
    return {
        "per_au": per_au,
        "mean": mean,
        "std": std,
        "n_frames": int(sum(m.get("n_frames", 0) for m in fold_metrics)),
        "n_subjects": int(sum(m.get("n_subjects", 0) for m in fold_metrics)),
    }


def crossval_markdown(metrics: dict[str, Any]) -> str:
    """Pooled and mean-over-folds tables in the papers' layout, then one line per fold."""
    folds = metrics.get("folds", [])
    parts = [
        metrics_table_markdown(metrics["pooled"], title=f"Pooled over {len(folds)} folds"),
        metrics_table_markdown(metrics["mean_over_folds"], title="Mean over folds"),
    ]
    spread = metrics["mean_over_folds"].get("std", {})
    if spread.get("icc") is not None:
        parts.append(f"Mean ICC across folds: std {spread['icc']:.3f}\n")
    lines = [
        "| Fold | Test subjects | Frames | Checkpoint | ICC | MAE | PCC | F1 | Training min |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for fold in folds:
        m = fold["mean"]
        cells = ["-" if m.get(k) is None else f"{m[k]:.2f}" for k in ("icc", "mae", "pcc", "f1")]
        seconds = fold.get("train_seconds")
        cells.append("-" if seconds is None else f"{seconds / 60:.1f}")
        subjects = ", ".join(fold.get("subjects", []))
        lines.append(
            f"| {fold['fold']} | {subjects} | {fold['n_frames']} | {fold['checkpoint']} | "
            + " | ".join(cells)
            + " |"
        )
    parts.append("\n".join(lines) + "\n")
    recorded = [fold["train_seconds"] for fold in folds if fold.get("train_seconds") is not None]
    if recorded:
        parts.append(
            f"Training wall time summed over {len(recorded)} folds: {sum(recorded) / 60:.1f} min "
            "(evaluation not included)\n"
        )
    return "\n".join(parts)


def crossval(
    config: str | Path,
    cache: Any,
    out: str | Path,
    *,
    folds: int = 3,
    overrides: Sequence[str] = (),
    threshold: float = OCCURRENCE_THRESHOLD,
    batch_size: int = 32,
    device: str = "auto",
    checkpoint: str = "last",
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> CrossvalResult:
    """Train and evaluate every fold of ``config`` (a preset name or YAML) on ``cache``; see module doc.

    ``cache`` is a prepared cache folder (or an open ``PreparedCache``, shared by all folds). ``overrides``
    are ``key=value`` config overrides applied to every fold; ``data.fold``/``data.folds``/``data.cache``
    are set here and must not be among them.
    """
    from facskit.config import load_config
    from facskit.eval.evaluate import evaluate, open_cache
    from facskit.train.loop import train

    if folds < 2:
        raise UsageError(f"cross-validation needs at least 2 folds, got {folds}")
    if checkpoint not in CHECKPOINTS:
        raise UsageError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, not {checkpoint!r}")
    checkpoint_file = CHECKPOINTS[checkpoint]
    reserved = [o for o in overrides if o.split("=", 1)[0].strip() in ("data.fold", "data.folds")]
    if reserved:
        raise UsageError(f"{', '.join(reserved)}: folds are set by crossval (use --folds)")
    note = log or ((lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr)))
    if checkpoint == "best" and not load_config(config, overrides).data.val_subjects:
        note(
            "warning: best.ckpt is the best epoch on the held-out fold, i.e. the test set; add "
            "data.val_subjects=N to choose it on N training-side subjects"
        )
    data = open_cache(cache)
    cache_path = str(getattr(data, "path", cache))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    trained, skipped = [], []
    fold_tables, fold_metrics = [], []
    for k in range(folds):
        directory = fold_dir(out, k)
        if _fold_finished(directory):
            note(f"fold {k}: finished earlier, skipped ({directory})")
            skipped.append(k)
            metrics = _read_json(directory / METRICS_FILE)
            predictions = read_predictions(directory / PREDICTIONS_FILE)
        else:
            fold_config = load_config(
                config, [*overrides, f"data.cache={cache_path}", f"data.fold={k}", f"data.folds={folds}"]
            )
            if fold_config.data.split != "kfold":
                raise UsageError(
                    f"crossval needs data.split=kfold, the config has {fold_config.data.split!r}"
                )
            note(f"fold {k}: training into {directory}")
            train(fold_config, directory, cache=data, quiet=quiet)
            note(f"fold {k}: evaluating on its held-out subjects")
            result = evaluate(
                directory / checkpoint_file,
                data,
                split="test",
                threshold=threshold,
                batch_size=batch_size,
                device=device,
            )
            metrics, predictions = result.metrics, result.predictions
            metrics["checkpoint"] = checkpoint_file
            metrics["subjects"] = sorted(predictions["subject"].astype(str).unique().tolist())
            # Predictions first, metrics last: metrics.json marks the fold finished.
            write_predictions(predictions, directory / PREDICTIONS_FILE)
            write_json(metrics, directory / METRICS_FILE)
            trained.append(k)
        fold_metrics.append(metrics)
        fold_tables.append(predictions.assign(fold=k))

    pooled_predictions = pd.concat(fold_tables, ignore_index=True)
    pooled = metrics_from_predictions(pooled_predictions.drop(columns="fold"), threshold=threshold)
    document = {
        "per_au": pooled["per_au"],
        "mean": pooled["mean"],
        "n_frames": pooled["n_frames"],
        "n_subjects": pooled["n_subjects"],
        "threshold": float(threshold),
        "pooled": pooled,
        "mean_over_folds": mean_over_folds(fold_metrics),
        "folds": [
            {
                "fold": k,
                "subjects": m.get("subjects", []),
                "n_frames": m.get("n_frames", 0),
                "checkpoint": m.get("checkpoint", BEST_CHECKPOINT),  # folds finished before it was recorded
                "train_seconds": _train_seconds(fold_dir(out, k)),
                "mean": m["mean"],
                "per_au": m["per_au"],
            }
            for k, m in enumerate(fold_metrics)
        ],
        "protocol": {
            "config": str(config),
            "overrides": list(overrides),
            "cache": cache_path,
            "folds": folds,
            "top_level": "pooled",
        },
        "notes": sorted({n for m in fold_metrics for n in m.get("notes", []) if "not evaluated" in n}),
    }
    write_predictions(pooled_predictions, out / PREDICTIONS_FILE)
    write_json(document, out / METRICS_FILE)
    result = CrossvalResult(document, pooled_predictions, trained, skipped)
    (out / REPORT_FILE).write_text(result.markdown)
    return result


def _train_seconds(directory: Path) -> float | None:
    """The fold's training wall time from its ``metrics.csv`` (``None`` where it was not recorded), so a
    cross-validation states what it cost next to what it scored."""
    try:
        seconds = pd.read_csv(directory / "metrics.csv", usecols=["seconds"])["seconds"]
    except (OSError, ValueError):
        return None
    return float(seconds.iloc[-1]) if len(seconds) else None


def _read_json(path: Path) -> dict[str, Any]:
    """A finished fold's metrics; a damaged file is named, with how to redo the fold."""
    import json

    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(
            f"{path}: not valid JSON ({error}); delete {path.parent} to train and evaluate that fold again"
        ) from None
    if not isinstance(document, dict):
        raise UsageError(f"{path}: not a facskit metrics document; delete {path.parent} to redo that fold")
    return document
