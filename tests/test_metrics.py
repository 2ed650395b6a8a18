"""facskit.metrics agrees with pingouin and scikit-learn and explains degenerate cases instead of crashing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facskit import metrics

pingouin = pytest.importorskip("pingouin")
sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _random_pair(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 6, size=n).astype(float)
    pred = np.clip(true + rng.normal(0.3, 1.0, size=n), 0, 5)
    return pred, true


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_icc_and_pcc_agree_with_pingouin(seed: int) -> None:
    pred, true = _random_pair(seed)
    n = len(pred)
    long = pd.DataFrame(
        {
            "target": np.tile(np.arange(n), 2),
            "rater": np.repeat(["pred", "true"], n),
            "score": np.concatenate([pred, true]),
        }
    )
    icc = pingouin.intraclass_corr(long, targets="target", raters="rater", ratings="score").set_index("Type")
    # pingouin < 0.7 names the rows ICC3 / ICC2; 0.7 names them by McGraw & Wong: ICC(C,1) / ICC(A,1).
    icc3 = icc.loc["ICC3" if "ICC3" in icc.index else "ICC(C,1)", "ICC"]
    icc2 = icc.loc["ICC2" if "ICC2" in icc.index else "ICC(A,1)", "ICC"]
    assert metrics.icc31(pred, true) == pytest.approx(icc3, abs=1e-9)
    assert metrics.icc21(pred, true) == pytest.approx(icc2, abs=1e-9)
    assert metrics.pcc(pred, true) == pytest.approx(pingouin.corr(pred, true)["r"].iloc[0], abs=1e-9)


def test_icc31_ignores_offset_icc21_does_not() -> None:
    pred, true = _random_pair(3)
    assert metrics.icc31(pred + 1.0, true) == pytest.approx(metrics.icc31(pred, true), abs=1e-12)
    assert metrics.icc21(pred + 1.0, true) < metrics.icc21(pred, true)


@pytest.mark.parametrize("seed", [0, 1])
def test_occurrence_metrics_agree_with_sklearn(seed: int) -> None:
    pred, true = _random_pair(seed)
    yp, yt = pred >= 2, true >= 2
    assert metrics.f1(pred, true) == pytest.approx(sklearn_metrics.f1_score(yt, yp), abs=1e-12)
    assert metrics.precision(pred, true) == pytest.approx(sklearn_metrics.precision_score(yt, yp), abs=1e-12)
    assert metrics.recall(pred, true) == pytest.approx(sklearn_metrics.recall_score(yt, yp), abs=1e-12)
    assert metrics.accuracy(pred, true) == pytest.approx(sklearn_metrics.accuracy_score(yt, yp), abs=1e-12)
    assert metrics.auc(pred, true) == pytest.approx(sklearn_metrics.roc_auc_score(yt, pred), abs=1e-12)
    # Ties in the scores (rounded predictions) are handled like sklearn's trapezoidal ROC.
    rounded = np.round(pred)
    assert metrics.auc(rounded, true) == pytest.approx(sklearn_metrics.roc_auc_score(yt, rounded), abs=1e-12)
    # A configurable threshold.
    assert metrics.f1(pred, true, threshold=3) == pytest.approx(
        sklearn_metrics.f1_score(true >= 3, pred >= 3), abs=1e-12
    )


def test_mae_rmse() -> None:
    pred, true = np.array([0.0, 1.0, 4.0]), np.array([1.0, 1.0, 2.0])
    assert metrics.mae(pred, true) == pytest.approx(1.0)
    assert metrics.rmse(pred, true) == pytest.approx(np.sqrt(5 / 3))


def test_nan_truth_is_dropped() -> None:
    pred, true = _random_pair(4)
    with_unknown = true.copy()
    with_unknown[::7] = np.nan
    keep = np.isfinite(with_unknown)
    assert metrics.icc31(pred, with_unknown) == pytest.approx(metrics.icc31(pred[keep], true[keep]))
    assert metrics.f1(pred, with_unknown) == pytest.approx(metrics.f1(pred[keep], true[keep]))


def test_degenerate_cases_are_nan_not_errors() -> None:
    true = np.zeros(10)
    pred = np.linspace(0, 1, 10)
    assert np.isnan(metrics.f1(pred, true))
    assert np.isnan(metrics.recall(pred, true))
    assert np.isnan(metrics.auc(pred, true))
    assert np.isnan(metrics.precision(pred, true))  # nothing predicted >= 2
    assert np.isnan(metrics.pcc(np.ones(10), np.arange(10.0)))
    assert np.isnan(metrics.icc31(np.ones(10), np.ones(10)))
    assert np.isnan(metrics.icc31(np.array([1.0]), np.array([1.0])))
    assert np.isnan(metrics.mae(np.array([]), np.array([])))


def test_au_table_layout_notes_and_mean() -> None:
    rng = np.random.default_rng(0)
    n = 120
    true = rng.integers(0, 6, size=(n, 3)).astype(float)
    true[:, 2] = rng.integers(0, 2, size=n)  # AU never reaching intensity 2: F1 undefined
    true[::10, 0] = np.nan  # unknown labels
    pred = np.clip(true + rng.normal(0, 0.8, size=(n, 3)), 0, 5)
    pred[:, 1] = 1.0  # constant prediction
    pred = np.nan_to_num(pred, nan=1.0)
    table = metrics.au_table(pred, true, aus=[6, 12, 17])
    assert list(table.index) == ["AU06", "AU12", "AU17", "Mean"]
    assert list(table.columns) == ["n", *metrics.METRIC_COLUMNS, "note"]
    assert table.loc["AU06", "n"] == n - 12
    assert np.isnan(table.loc["AU17", "F1"]) and "no positive frames" in table.loc["AU17", "note"]
    assert np.isnan(table.loc["AU12", "PCC"]) and "constant prediction" in table.loc["AU12", "note"]
    assert table.loc["Mean", "ICC"] == pytest.approx(table.loc[["AU06", "AU12", "AU17"], "ICC"].mean())
    assert table.loc["Mean", "F1"] == pytest.approx(table.loc[["AU06", "AU12"], "F1"].mean())
    assert table.loc["AU06", "ICC"] == pytest.approx(metrics.icc31(pred[:, 0], true[:, 0]))
    # DataFrame input by column name, in any column order.
    frame_pred = pd.DataFrame(pred, columns=["AU06", "AU12", "AU17"])[["AU17", "AU06", "AU12"]]
    frame_true = pd.DataFrame(true, columns=["AU06", "AU12", "AU17"])
    again = metrics.au_table(frame_pred, frame_true, aus=[6, 12, 17])
    pd.testing.assert_frame_equal(table, again)


def test_au_table_cluster_bootstrap() -> None:
    rng = np.random.default_rng(1)
    subjects = np.repeat([f"S{i}" for i in range(8)], 30)
    true = rng.integers(0, 6, size=(len(subjects), 2)).astype(float)
    pred = np.clip(true + rng.normal(0, 1, size=true.shape), 0, 5)
    table = metrics.au_table(pred, true, aus=[6, 12], subjects=subjects, bootstrap=50, seed=0)
    for row in ["AU06", "AU12", "Mean"]:
        assert table.loc[row, "ICC_lo"] <= table.loc[row, "ICC"] <= table.loc[row, "ICC_hi"]
    same = metrics.au_table(pred, true, aus=[6, 12], subjects=subjects, bootstrap=50, seed=0)
    pd.testing.assert_frame_equal(table, same)
