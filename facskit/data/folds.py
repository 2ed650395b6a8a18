"""Subject-exclusive splits: k-fold cross-validation and the FERA 2015 train/development partition.

Frames of one person are strongly correlated, so every protocol in the papers (DISFA 3-fold, BP4D 3-fold,
FERA 2015 train/dev) keeps a subject entirely on one side. Folds here depend only on the *set* of subjects
and the seed: the input is de-duplicated and sorted first, so the order in which a reader lists subjects, or
the worker count that prepared a cache, never changes a split.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from facskit.errors import DatasetError

# FERA 2015 (Valstar et al., FG 2015) BP4D partition: 21 training and 20 development subjects. The lists are
# the ones OpenFace's FERA 2015 experiments use (TadasBaltrusaitis/OpenFace,
# model_training/AU_training/experiments/*: train_recs / devel_recs); the challenge's own test partition was
# never released with labels.
FERA2015_TRAIN_SUBJECTS: tuple[str, ...] = (
    "F001", "F003", "F005", "F007", "F009", "F011", "F013", "F015", "F017", "F019", "F021", "F023",
    "M001", "M003", "M005", "M007", "M009", "M011", "M013", "M015", "M017",
)  # fmt: skip
FERA2015_DEVEL_SUBJECTS: tuple[str, ...] = (
    "F002", "F004", "F006", "F008", "F010", "F012", "F014", "F016", "F018", "F020", "F022",
    "M002", "M004", "M006", "M008", "M010", "M012", "M014", "M016", "M018",
)  # fmt: skip


class FoldError(DatasetError, ValueError):
    """A split the data cannot give (3 folds of 2 subjects, fold 5 of 3): a dataset error the CLI prints in
    one line, and still the ValueError that callers of these functions catch."""


def subject_folds(subjects: Iterable[str], k: int = 3, seed: int = 0) -> list[list[str]]:
    """Split subjects into ``k`` disjoint folds whose sizes differ by at most one.

    Deterministic: the unique subjects are sorted, shuffled with ``numpy.random.default_rng(seed)`` and
    dealt round-robin; each fold is returned sorted. The same set and seed give the same folds on every
    machine and numpy version that keeps ``default_rng``'s PCG64 stream (numpy guarantees that).
    """
    unique = sorted({str(s) for s in subjects})
    if k < 2:
        raise FoldError(f"k must be at least 2 for cross-validation, got {k}")
    if len(unique) < k:
        raise FoldError(
            f"cannot make {k} subject-exclusive folds from {len(unique)} subjects; lower the number of folds "
            "(data.folds, --folds) or use a cache with more subjects"
        )
    order = np.random.default_rng(seed).permutation(len(unique))
    folds: list[list[str]] = [[] for _ in range(k)]
    for position, i in enumerate(order):
        folds[position % k].append(unique[i])
    return [sorted(fold) for fold in folds]


def fold_split(
    index: pd.DataFrame, k: int = 3, fold: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, test) over the rows of ``index`` (any frame with a ``subject`` column).

    Test is fold ``fold`` of :func:`subject_folds` over the subjects present; train is every other row.
    """
    if not 0 <= fold < k:
        raise FoldError(f"fold must be in 0..{k - 1}, got {fold}")
    subjects = index["subject"].astype(str)
    test_subjects = subject_folds(subjects.unique(), k, seed)[fold]
    test = subjects.isin(test_subjects).to_numpy()
    return ~test, test


def validation_split(
    index: pd.DataFrame, train: np.ndarray, n_subjects: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Move ``n_subjects`` whole subjects of the ``train`` mask into a validation mask; returns (train, val).

    Under k-fold CV the held-out fold is the test set, so choosing the best epoch on it would tune on the test
    data; these validation subjects come from the training side instead. Deterministic: the training subjects
    are sorted and shuffled with ``default_rng([seed, 1])`` (a stream apart from :func:`subject_folds`').
    """
    subjects = index["subject"].astype(str)
    candidates = sorted(subjects[train].unique())
    if not 0 < n_subjects < len(candidates):
        raise ValueError(
            f"data.val_subjects must be in 1..{len(candidates) - 1} (the training side has "
            f"{len(candidates)} subjects), got {n_subjects}"
        )
    order = np.random.default_rng([seed, 1]).permutation(len(candidates))
    chosen = [candidates[i] for i in order[:n_subjects]]
    val = subjects.isin(chosen).to_numpy() & train
    return train & ~val, val


def fera2015_split(index: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, development) for the FERA 2015 BP4D partition; other subjects are in neither."""
    subjects = index["subject"].astype(str).str.upper()
    return (
        subjects.isin(FERA2015_TRAIN_SUBJECTS).to_numpy(),
        subjects.isin(FERA2015_DEVEL_SUBJECTS).to_numpy(),
    )
