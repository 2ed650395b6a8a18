"""AU intensity and occurrence metrics, and the per-AU table of the papers.

Plain functions on 1-D arrays (``pred`` first, ``true`` second). Pairs whose truth is NaN (an unknown label,
e.g. BP4D's 9) or whose prediction is NaN (no face found) are dropped before computing, so every function is
NaN-safe; a metric that is undefined on what is left (no positive frame for F1, a constant prediction for
PCC) is ``nan``, and :func:`au_table` says why in its ``note`` column instead of raising.

The intensity metrics follow DESIGN.md section 4: ICC(3,1) (two-way mixed, consistency, single rater) is the
papers' headline number, computed on the ``(n, 2)`` matrix of (prediction, label) per frame (Shrout & Fleiss
1979). Occurrence is ``intensity >= threshold`` (2 in the DISFA/BP4D protocols) for both prediction and label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from facskit.aus import OCCURRENCE_THRESHOLD

__all__ = [
    "METRIC_COLUMNS",
    "accuracy",
    "au_table",
    "auc",
    "f1",
    "icc21",
    "icc31",
    "mae",
    "pcc",
    "precision",
    "recall",
    "rmse",
]

# Column order of au_table, the papers' table layout (intensity first, occurrence after).
METRIC_COLUMNS = ("ICC", "MAE", "RMSE", "PCC", "F1", "precision", "recall", "accuracy", "AUC")


def _pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 1-D arrays with NaN pairs removed; shapes must agree."""
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(true, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred and true differ in length: {p.size} vs {t.size}")
    keep = np.isfinite(p) & np.isfinite(t)
    return p[keep], t[keep]


def _anova_mean_squares(pred: np.ndarray, true: np.ndarray) -> tuple[float, float, float, int]:
    """Two-way ANOVA of the (n targets x k=2 raters) matrix: (MS_rows, MS_cols, MS_err, n)."""
    p, t = _pair(pred, true)
    x = np.stack([p, t], axis=1)  # (n, k)
    n, k = x.shape
    if n < 2:
        return np.nan, np.nan, np.nan, n
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_err = np.sum((x - grand) ** 2) - ss_rows - ss_cols
    return ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1)), n


def icc31(pred: np.ndarray, true: np.ndarray) -> float:
    """ICC(3,1): (MS_rows - MS_err) / (MS_rows + (k-1) MS_err), k = 2; blind to a constant offset.

    ``nan`` for fewer than two frames or when both raters are constant (0/0).
    """
    ms_rows, _, ms_err, _ = _anova_mean_squares(pred, true)
    denominator = ms_rows + ms_err
    if not np.isfinite(denominator) or denominator <= 0:
        return float("nan")
    return float((ms_rows - ms_err) / denominator)


def icc21(pred: np.ndarray, true: np.ndarray) -> float:
    """ICC(2,1), two-way random, absolute agreement: unlike ICC(3,1) it penalises a constant bias.

    (MS_rows - MS_err) / (MS_rows + (k-1) MS_err + k (MS_cols - MS_err) / n), k = 2.
    """
    ms_rows, ms_cols, ms_err, n = _anova_mean_squares(pred, true)
    k = 2
    denominator = ms_rows + (k - 1) * ms_err + k * (ms_cols - ms_err) / max(n, 1)
    if not np.isfinite(denominator) or denominator <= 0:
        return float("nan")
    return float((ms_rows - ms_err) / denominator)


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error in intensity units (0-5)."""
    p, t = _pair(pred, true)
    return float(np.mean(np.abs(p - t))) if p.size else float("nan")


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error in intensity units (0-5)."""
    p, t = _pair(pred, true)
    return float(np.sqrt(np.mean((p - t) ** 2))) if p.size else float("nan")


def pcc(pred: np.ndarray, true: np.ndarray) -> float:
    """Pearson correlation; ``nan`` when either side is constant (the correlation is 0/0)."""
    p, t = _pair(pred, true)
    if p.size < 2:
        return float("nan")
    dp, dt = p - p.mean(), t - t.mean()
    denominator = np.sqrt(np.sum(dp**2) * np.sum(dt**2))
    if denominator == 0:
        return float("nan")
    return float(np.sum(dp * dt) / denominator)


def _confusion(pred: np.ndarray, true: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) of occurrence = intensity >= threshold on both sides."""
    p, t = _pair(pred, true)
    yp, yt = p >= threshold, t >= threshold
    return (
        int(np.sum(yp & yt)),
        int(np.sum(yp & ~yt)),
        int(np.sum(~yp & yt)),
        int(np.sum(~yp & ~yt)),
    )


def f1(pred: np.ndarray, true: np.ndarray, threshold: float = OCCURRENCE_THRESHOLD) -> float:
    """F1 of occurrence; ``nan`` when no frame is truly positive (an AU never active: F1 is undefined)."""
    tp, fp, fn, _ = _confusion(pred, true, threshold)
    if tp + fn == 0:
        return float("nan")
    return 2 * tp / (2 * tp + fp + fn)


def precision(pred: np.ndarray, true: np.ndarray, threshold: float = OCCURRENCE_THRESHOLD) -> float:
    """TP / (TP + FP); ``nan`` when nothing is predicted positive."""
    tp, fp, _, _ = _confusion(pred, true, threshold)
    return tp / (tp + fp) if tp + fp else float("nan")


def recall(pred: np.ndarray, true: np.ndarray, threshold: float = OCCURRENCE_THRESHOLD) -> float:
    """TP / (TP + FN); ``nan`` when no frame is truly positive."""
    tp, _, fn, _ = _confusion(pred, true, threshold)
    return tp / (tp + fn) if tp + fn else float("nan")


def accuracy(pred: np.ndarray, true: np.ndarray, threshold: float = OCCURRENCE_THRESHOLD) -> float:
    """Fraction of frames whose occurrence is right."""
    tp, fp, fn, tn = _confusion(pred, true, threshold)
    total = tp + fp + fn + tn
    return (tp + tn) / total if total else float("nan")


def auc(pred: np.ndarray, true: np.ndarray, threshold: float = OCCURRENCE_THRESHOLD) -> float:
    """ROC AUC of the continuous prediction against occurrence of the truth (Mann-Whitney U / (n+ n-)).

    Rank-based with tied scores given their mean rank, so it equals the trapezoidal ROC area;
    ``nan`` when the truth has only one class.
    """
    p, t = _pair(pred, true)
    positive = t >= threshold
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _au_name(code: int | str) -> str:
    # The column naming rule of the AU registry (architecture.md: au_column(6) -> "AU06"), kept local so
    # metrics has no import beyond numpy/pandas/scipy.
    return code if isinstance(code, str) else f"AU{int(code):02d}"


def _metrics_of(p: np.ndarray, t: np.ndarray, threshold: float) -> dict[str, float]:
    return {
        "ICC": icc31(p, t),
        "MAE": mae(p, t),
        "RMSE": rmse(p, t),
        "PCC": pcc(p, t),
        "F1": f1(p, t, threshold),
        "precision": precision(p, t, threshold),
        "recall": recall(p, t, threshold),
        "accuracy": accuracy(p, t, threshold),
        "AUC": auc(p, t, threshold),
    }


def _notes_of(p: np.ndarray, t: np.ndarray, threshold: float, n_missing_pred: int) -> str:
    """Why a value in this row is NaN (or what was dropped), in words a reader of the table understands."""
    notes = []
    if n_missing_pred:
        notes.append(f"{n_missing_pred} frames without a prediction dropped")
    if p.size == 0:
        return "; ".join([*notes, "no labelled frames: all metrics undefined"])
    positive = t >= threshold
    if not positive.any():
        notes.append("no positive frames: F1, recall and AUC undefined")
    elif positive.all():
        notes.append("no negative frames: AUC undefined")
    if not (p >= threshold).any():
        notes.append("nothing predicted positive: precision undefined")
    if p.size > 1 and np.ptp(p) == 0:
        notes.append("constant prediction: PCC undefined")
    if p.size > 1 and np.ptp(t) == 0:
        notes.append("constant labels: PCC undefined")
    return "; ".join(notes)


def au_table(
    pred: pd.DataFrame | np.ndarray,
    true: pd.DataFrame | np.ndarray,
    aus: Sequence[int | str],
    subjects: Sequence[str] | np.ndarray | None = None,
    threshold: float = OCCURRENCE_THRESHOLD,
    bootstrap: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-AU metrics plus a ``Mean`` row (the mean over AUs, NaN-skipping), in the papers' layout.

    Args:
        pred, true: ``(N, A)`` intensities; DataFrames are indexed by AU column name (``AU06``), arrays by
            position in ``aus``. NaN truth (unknown label) drops that frame for that AU only.
        aus: AU codes (``6``) or column names, one per column.
        subjects: ``(N,)`` subject of each frame; bootstrap resamples whole subjects (a cluster bootstrap),
            because frames of one person are strongly correlated and resampling frames would give CIs that
            are far too narrow. Without subjects the bootstrap resamples frames.
        threshold: occurrence = intensity >= threshold.
        bootstrap: number of bootstrap resamples; > 0 adds ``<metric>_lo`` / ``<metric>_hi`` 95% percentile
            intervals.
    Returns:
        DataFrame indexed by AU name (``AU06`` ..., ``Mean``) with ``n`` (frames used), the
        :data:`METRIC_COLUMNS`, optional CI columns, and ``note`` explaining every undefined value.
    """
    names = [_au_name(code) for code in aus]
    p_all = _as_matrix(pred, names)
    t_all = _as_matrix(true, names)
    if p_all.shape != t_all.shape:
        raise ValueError(f"pred and true shapes differ: {p_all.shape} vs {t_all.shape}")

    rows: dict[str, dict[str, object]] = {}
    for j, name in enumerate(names):
        labelled = np.isfinite(t_all[:, j])
        missing = int(np.sum(labelled & ~np.isfinite(p_all[:, j])))
        p, t = _pair(p_all[:, j], t_all[:, j])
        rows[name] = {
            "n": int(p.size),
            **_metrics_of(p, t, threshold),
            "note": _notes_of(p, t, threshold, missing),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    mean = {"n": int(table["n"].sum())}
    for column in METRIC_COLUMNS:
        values = table[column].to_numpy(dtype=np.float64)
        mean[column] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    undefined = [name for name in names if table.loc[name, list(METRIC_COLUMNS)].isna().any()]
    mean["note"] = f"mean over defined AUs; undefined in {', '.join(undefined)}" if undefined else ""
    table.loc["Mean"] = pd.Series(mean)
    table["n"] = table["n"].astype(int)
    table.index.name = "AU"

    if bootstrap > 0:
        table = _add_bootstrap(table, p_all, t_all, names, subjects, threshold, bootstrap, seed)
    columns = ["n", *METRIC_COLUMNS]
    if bootstrap > 0:
        columns += [f"{c}_{end}" for c in METRIC_COLUMNS for end in ("lo", "hi")]
    return table[[*columns, "note"]]


def _as_matrix(values: pd.DataFrame | np.ndarray, names: list[str]) -> np.ndarray:
    if isinstance(values, pd.DataFrame):
        missing = [name for name in names if name not in values.columns]
        if missing:
            raise ValueError(f"columns {missing} missing; have {list(values.columns)}")
        return values[names].to_numpy(dtype=np.float64)
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise ValueError(f"expected an (N, {len(names)}) array, got shape {matrix.shape}")
    return matrix


def _add_bootstrap(
    table: pd.DataFrame,
    p_all: np.ndarray,
    t_all: np.ndarray,
    names: list[str],
    subjects: Sequence[str] | np.ndarray | None,
    threshold: float,
    bootstrap: int,
    seed: int,
) -> pd.DataFrame:
    """Percentile 95% intervals from ``bootstrap`` resamples of subjects (or frames without subjects)."""
    rng = np.random.default_rng(seed)
    if subjects is None:
        groups = [np.array([i]) for i in range(len(p_all))]
    else:
        codes, _ = pd.factorize(pd.Series(np.asarray(subjects)))
        order = np.argsort(codes, kind="stable")
        splits = np.flatnonzero(np.diff(codes[order])) + 1
        groups = np.split(order, splits)
    samples = np.full((bootstrap, len(names) + 1, len(METRIC_COLUMNS)), np.nan)
    for b in range(bootstrap):
        chosen = rng.integers(0, len(groups), size=len(groups))
        index = np.concatenate([groups[g] for g in chosen])
        for j in range(len(names)):
            p, t = _pair(p_all[index, j], t_all[index, j])
            samples[b, j] = list(_metrics_of(p, t, threshold).values())
        per_au = samples[b, : len(names)]  # the Mean row, as in the table: mean over defined AUs
        counts = np.isfinite(per_au).sum(axis=0)
        samples[b, -1] = np.where(counts > 0, np.nansum(per_au, axis=0) / np.maximum(counts, 1), np.nan)
    table = table.copy()
    for m, column in enumerate(METRIC_COLUMNS):
        values = samples[:, :, m]
        lo, hi = np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
        for r in range(values.shape[1]):
            finite = values[np.isfinite(values[:, r]), r]
            if finite.size:
                lo[r], hi[r] = np.percentile(finite, [2.5, 97.5])
        table[f"{column}_lo"] = lo
        table[f"{column}_hi"] = hi
    return table
