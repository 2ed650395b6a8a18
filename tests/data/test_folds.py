"""Subject-exclusive folds: disjoint, complete, balanced, deterministic and independent of input order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facskit.data.folds import (
    FERA2015_DEVEL_SUBJECTS,
    FERA2015_TRAIN_SUBJECTS,
    fera2015_split,
    fold_split,
    subject_folds,
    validation_split,
)

# The 27 DISFA subjects (SN014, SN015, SN019, SN020, SN022 do not exist).
DISFA_SUBJECTS = [f"SN{s:03d}" for s in range(1, 33) if s not in (14, 15, 19, 20, 22)]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_partition_the_subjects_in_balanced_sizes(k: int) -> None:
    folds = subject_folds(DISFA_SUBJECTS, k=k, seed=0)
    assert len(folds) == k
    flat = [s for fold in folds for s in fold]
    assert sorted(flat) == sorted(DISFA_SUBJECTS) and len(flat) == len(set(flat))
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert all(fold == sorted(fold) for fold in folds)


def test_folds_are_deterministic_and_ignore_input_order_and_duplicates() -> None:
    reference = subject_folds(DISFA_SUBJECTS, k=3, seed=7)
    shuffled = list(np.random.default_rng(1).permutation(DISFA_SUBJECTS)) * 2
    assert subject_folds(shuffled, k=3, seed=7) == reference
    assert subject_folds(DISFA_SUBJECTS, k=3, seed=7) == reference
    assert subject_folds(DISFA_SUBJECTS, k=3, seed=8) != reference


def test_fold_split_masks_are_subject_exclusive() -> None:
    index = pd.DataFrame({"subject": np.repeat(DISFA_SUBJECTS, 4), "frame": np.tile(np.arange(4), 27)})
    tested = []
    for fold in range(3):
        train, test = fold_split(index, k=3, fold=fold, seed=0)
        assert (train ^ test).all()
        assert not set(index["subject"][train]) & set(index["subject"][test])
        tested.extend(index["subject"][test].unique())
    assert sorted(tested) == sorted(DISFA_SUBJECTS)
    with pytest.raises(ValueError):
        fold_split(index, k=3, fold=3)
    with pytest.raises(ValueError, match="cannot make 3"):
        subject_folds(["a", "b"], k=3)


def test_validation_subjects_come_from_the_training_side_never_the_test_fold() -> None:
    index = pd.DataFrame({"subject": np.repeat(DISFA_SUBJECTS, 4), "frame": np.tile(np.arange(4), 27)})
    train, test = fold_split(index, k=3, fold=1, seed=0)
    fit, val = validation_split(index, train, 3, seed=0)
    subjects = index["subject"]
    assert set(subjects[val]).isdisjoint(subjects[test]) and set(subjects[val]).isdisjoint(subjects[fit])
    assert subjects[val].nunique() == 3 and (fit | val | test).all() and not (fit & val).any()
    assert (fit | val).tolist() == train.tolist()  # whole subjects moved, nothing lost
    again = validation_split(index, train, 3, seed=0)
    assert again[1].tolist() == val.tolist()
    assert validation_split(index, train, 3, seed=5)[1].tolist() != val.tolist()
    with pytest.raises(ValueError, match="val_subjects must be in 1..17"):
        validation_split(index, train, 18)


def test_fera2015_partition() -> None:
    assert len(FERA2015_TRAIN_SUBJECTS) == 21 and len(FERA2015_DEVEL_SUBJECTS) == 20
    assert not set(FERA2015_TRAIN_SUBJECTS) & set(FERA2015_DEVEL_SUBJECTS)
    index = pd.DataFrame({"subject": ["F001", "F002", "M017", "M018", "X999"]})
    train, dev = fera2015_split(index)
    assert train.tolist() == [True, False, True, False, False]
    assert dev.tolist() == [False, True, False, True, False]
