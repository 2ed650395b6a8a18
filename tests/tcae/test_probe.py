"""The pose probe: subject-grouped choice of the ridge penalty, and within-subject pose."""

import numpy as np
import pytest
import torch

from facskit.tcae.probe import _pose_r2 as pose_r2
from facskit.tcae.probe import centre_by_subject


def _subjects(n_subjects: int = 12, frames: int = 100) -> np.ndarray:
    return np.repeat([f"S{k:02d}" for k in range(n_subjects)], frames)


def test_centre_by_subject_removes_each_subject_mean() -> None:
    rng = np.random.default_rng(0)
    subjects = _subjects(4, 10)
    x = rng.normal(size=(40, 3)) + np.repeat(rng.normal(size=(4, 3)) * 10, 10, axis=0)
    centred = centre_by_subject(x, subjects)
    for subject in np.unique(subjects):
        assert np.allclose(centred[subjects == subject].mean(axis=0), 0.0)
    assert centred.shape == x.shape


def test_identity_features_do_not_extrapolate_wildly() -> None:
    """Features that only encode who the subject is (plus frame noise) cannot predict a new subject's pose.

    The probe must then say ~0, not a large negative R^2: the ridge penalty is picked on held-out *training
    subjects*, not leave-one-frame-out (which keeps near-duplicate neighbours and picks no penalty, so the
    regression fits each training identity's mean pose and extrapolates to new identities).
    """
    rng = np.random.default_rng(1)
    subjects = _subjects(12, 100)
    identity = np.repeat(rng.normal(size=(12, 64)), 100, axis=0)  # (N, 64): one code per subject
    x = identity + 1e-3 * rng.normal(size=identity.shape)
    pose = np.repeat(rng.normal(scale=5.0, size=(12, 3)), 100, axis=0) + rng.normal(size=(1200, 3))
    train, test = subjects < "S08", subjects >= "S08"
    r2 = pose_r2(x[train], pose[train], x[test], pose[test], subjects[train])
    assert min(r2) > -1.0, r2


def test_within_subject_pose_is_recovered_despite_identity() -> None:
    rng = np.random.default_rng(2)
    subjects = _subjects(12, 100)
    pose = np.repeat(rng.normal(scale=5.0, size=(12, 3)), 100, axis=0) + rng.normal(size=(1200, 3))
    identity = np.repeat(rng.normal(scale=20.0, size=(12, 16)), 100, axis=0)
    x = np.concatenate([pose @ rng.normal(size=(3, 8)), identity], axis=1) + 0.05 * rng.normal(
        size=(1200, 24)
    )
    xc, pc = centre_by_subject(x, subjects), centre_by_subject(pose, subjects)
    train, test = subjects < "S08", subjects >= "S08"
    r2 = pose_r2(xc[train], pc[train], xc[test], pc[test], subjects[train])
    assert min(r2) > 0.9, r2


@pytest.fixture(scope="module")
def labelled_cache(tmp_path_factory: pytest.TempPathFactory):
    from facskit.data import PreparedCache, prepare_dataset, read_disfa
    from facskit.synth import write_dataset

    root = tmp_path_factory.mktemp("probe")
    write_dataset(root / "disfa", "disfa", subjects=3, frames=16, seed=11, quiet=True)
    prepare_dataset(read_disfa(root / "disfa"), root / "cache", workers=1, progress=False)
    return PreparedCache(root / "cache")


def _tiny_tcae():
    from facskit.models.tcae import TCAE, TCAESpec

    torch.manual_seed(0)
    return TCAE(TCAESpec(input_size=32, filters=4, embedding_size=8, branch_layers=2))


def test_linear_head_is_the_linear_probe_of_the_frozen_features(labelled_cache) -> None:
    """LP-FT's starting head gives the logistic regressions' decision values on raw (unstandardised)
    features, and an AU with one class in the training rows gets its prior."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from facskit.tcae.pairs import CachePairDataset
    from facskit.tcae.probe import _AUClassifier, _fit_linear_head, embed_cache

    model = _tiny_tcae()
    images = CachePairDataset(labelled_cache, 32, preload=True)
    rng = np.random.default_rng(0)
    labels = (rng.random((len(labelled_cache), 3)) < 0.4).astype(float)
    labels[::5, 0] = np.nan  # unknown labels are left out of the fit
    labels[:, 2] = 0.0  # one class only
    train = np.arange(0, len(labelled_cache), 2)
    net = _AUClassifier(model, 3)
    phi, _ = embed_cache(model, images, rows=train)  # eval-mode BatchNorm, as below
    _fit_linear_head(net.head, phi, labels[train])
    assert not net.trunk.training and not net.branch.training  # the forward below uses eval BatchNorm too
    with torch.no_grad():
        x = net.features(torch.stack([images[int(i)] for i in train])).numpy()
        logits = net(torch.stack([images[int(i)] for i in train])).numpy()
    for a in (0, 1):
        known = ~np.isnan(labels[train, a])
        scaler = StandardScaler().fit(x[known])
        fit = LogisticRegression(class_weight="balanced", max_iter=2000).fit(
            scaler.transform(x[known]), labels[train, a][known]
        )
        np.testing.assert_allclose(logits[:, a], fit.decision_function(scaler.transform(x)), atol=1e-3)
    assert (logits[:, 2] < -5).all()


def test_run_probe_reports_every_feature_set_and_both_finetunes(labelled_cache) -> None:
    from facskit.tcae.probe import format_probe_table, run_probe

    result = run_probe(
        _tiny_tcae(),
        labelled_cache,
        folds=3,
        fractions=(0.5, 1.0),
        finetune=True,
        finetune_min_steps=2,
        finetune_head="linear",
        batch_size=8,
        log=lambda text: None,
    )
    names = {
        "linear tcae_au (phi)",
        "linear tcae_pose (psi)",
        "linear random_au (phi)",
        "finetune tcae",
        "scratch",
        "scratch, linear head",  # LP-FT: scratch both ways, the TCAE row must beat the better
    }
    assert set(result.f1) == names
    for by_fraction in result.f1.values():
        assert set(by_fraction) == {"0.5", "1"}
        for entry in by_fraction.values():
            assert set(entry) == {*result.aus, "mean"}
            assert all(np.isnan(v) or 0.0 <= v <= 1.0 for v in entry.values())
    assert set(result.pose_r2_within) == {
        "tcae_au (phi)",
        "tcae_pose (psi)",
        "random_au (phi)",
        "random_pose (psi)",
    }
    assert "finetune tcae" in format_probe_table(result)
    with pytest.raises(ValueError, match="finetune head"):
        run_probe(
            _tiny_tcae(), labelled_cache, folds=3, finetune=True, finetune_head="probe", log=lambda t: None
        )


def test_label_draws_average_the_few_label_rows_only(labelled_cache) -> None:
    from facskit.tcae.probe import run_probe

    def probe(draws: int):
        return run_probe(
            _tiny_tcae(), labelled_cache, folds=3, fractions=(0.5, 1.0), label_draws=draws, log=lambda t: None
        )

    one, three = probe(1), probe(3)

    def f1(result, fraction: str) -> np.ndarray:
        return np.array(list(result.f1["linear tcae_au (phi)"][fraction].values()))

    assert np.array_equal(f1(one, "1"), f1(three, "1"), equal_nan=True)  # all labels: a single draw
    assert not np.array_equal(f1(one, "0.5"), f1(three, "0.5"), equal_nan=True)
    assert any("3 draws" in note for note in three.notes) and not any("draws" in n for n in one.notes)
    with pytest.raises(ValueError, match="label_draws"):
        probe(0)
