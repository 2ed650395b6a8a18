"""Probes of frozen features (scikit-learn): AU occurrence by logistic regression, head pose by ridge.

Both standardise the features first, so that one penalty suits embeddings of any scale. The pose ridge
chooses its penalty by subject-grouped cross-validation on the training subjects (see :func:`pose_r2`):
leave-one-out over neighbouring video frames, RidgeCV's default, picks almost no penalty, which fits each
training subject's identity and produced R^2 of -300 on held-out subjects.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

RIDGE_ALPHAS = np.logspace(-2, 5, 8)  # ridge penalties tried for the pose regression (standardised features)


def linear_probe(x_train: np.ndarray, y_train: np.ndarray) -> Any:
    """The linear probe of one AU, fitted: balanced logistic regression on standardised features (a
    scikit-learn pipeline: ``[0]`` the scaler, ``[-1]`` the classifier). ``y_train`` needs both classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    return classifier.fit(x_train, y_train)


def linear_f1(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """F1 of :func:`linear_probe` on the test rows; NaN when the train split has one class."""
    from facskit.metrics import f1

    if len(np.unique(y_train)) < 2:
        return float("nan")
    predicted = linear_probe(x_train, y_train).predict(x_test)
    return f1(predicted.astype(float), y_test.astype(float), threshold=0.5)


def centre_by_subject(x: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """``x (N, D)`` minus each subject's mean row (labels are not needed: it works on unlabelled frames)."""
    out = np.array(x, dtype=np.float64, copy=True)
    for subject in np.unique(subjects):
        rows = subjects == subject
        out[rows] -= out[rows].mean(axis=0)
    return out


def pose_r2(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, groups_train: np.ndarray
) -> list[float]:
    """R^2 per pose column on the test rows; the ridge penalty is chosen by subject-grouped CV.

    ``groups_train`` are the training rows' subjects: the penalty maximising the mean R^2 over held-out
    training subjects (3 groups) is refitted on all training rows.
    """
    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit(alpha: float, rows: np.ndarray) -> Any:
        return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x_train[rows], y_train[rows])

    unique = np.unique(groups_train)
    best_alpha = float(RIDGE_ALPHAS[-1])  # the strongest penalty when there are too few subjects to choose
    with warnings.catch_warnings():  # the smallest penalties on near-constant features are ill-conditioned
        warnings.simplefilter("ignore", category=LinAlgWarning)
        best_alpha = grouped_alpha(fit, x_train, y_train, groups_train, unique, best_alpha)
        predicted = fit(best_alpha, np.arange(len(x_train))).predict(x_test)
    return [float(r2_score(y_test[:, k], predicted[:, k])) for k in range(y_test.shape[1])]


def grouped_alpha(
    fit: Callable[[float, np.ndarray], Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    unique: np.ndarray,
    default: float,
) -> float:
    """The ridge penalty with the best mean R^2 over 3 groups of held-out training subjects.

    ``fit(alpha, rows)`` fits on the training rows selected by ``rows``; ``unique`` are the training
    subjects; ``default`` is returned when there are fewer than 2 of them.
    """
    from sklearn.metrics import r2_score

    best_alpha = default
    if len(unique) >= 2:
        parts = np.array_split(unique, min(3, len(unique)))
        scores = []
        for alpha in RIDGE_ALPHAS:
            fold_scores = []
            for part in parts:
                held = np.isin(groups_train, part)
                predicted = fit(alpha, ~held).predict(x_train[held])
                fold_scores.append(r2_score(y_train[held], predicted))
            scores.append(np.mean(fold_scores))
        best_alpha = float(RIDGE_ALPHAS[int(np.argmax(scores))])
    return best_alpha
