"""The pose probe: subject-grouped choice of the ridge penalty, and within-subject pose."""

import numpy as np

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
