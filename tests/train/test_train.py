"""Training: a tiny model overfits, a killed run resumes bitwise-exactly, the sampler and augmentation
keep their invariants, and the CLI reports config errors in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from facskit.aus import au_points
from facskit.config import Config, apply_overrides
from facskit.train.augment import augment_sample, flip_landmarks
from facskit.train.dataset import HeatmapDataset, StepSampler
from facskit.train.loop import masked_mse, train

AUS = (6, 12, 17)


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """These models are tiny: one intra-op thread is faster than two, and far faster on a loaded machine
    where OpenMP threads wait for each other (1 s instead of 20 ms per step was measured here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def face_landmarks(size: int) -> np.ndarray:
    """A plausible frontal iBUG-68 layout in a ``size`` crop (jaw, brows, nose, eyes, mouth)."""
    t = np.linspace(np.pi, 0, 17)
    jaw = np.stack([128 + 100 * np.cos(t), 120 + 110 * np.sin(t)], 1)
    brows = np.array(
        [[x, 80.0] for x in np.linspace(60, 110, 5)] + [[x, 80.0] for x in np.linspace(146, 196, 5)]
    )
    nose = np.array(
        [[128, y] for y in np.linspace(90, 140, 4)] + [[x, 150] for x in np.linspace(108, 148, 5)]
    )
    left_eye = np.array([[65, 100], [78, 93], [92, 93], [105, 100], [92, 106], [78, 106]], float)
    right_eye = left_eye.copy()
    right_eye[:, 0] = 255 - right_eye[:, 0]
    right_eye = right_eye[[3, 2, 1, 0, 5, 4]]
    a = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    outer = np.stack([128 + 35 * np.cos(a), 185 - 15 * np.sin(a)], 1)
    b = np.linspace(np.pi, -np.pi, 8, endpoint=False)
    inner = np.stack([128 + 25 * np.cos(b), 185 - 6 * np.sin(b)], 1)
    shape = np.concatenate([jaw, brows, nose, left_eye, right_eye, outer, inner]).astype(np.float32)
    assert shape.shape == (68, 2)
    return shape * (size / 256.0)


class MemoryCache:
    """An in-memory stand-in with PreparedCache's reading interface (len, [i], .index, .aus): synthetic
    faces whose AU regions brighten with intensity, so the task is learnable."""

    def __init__(self, n: int, size: int = 64, subjects: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.aus = AUS
        base = face_landmarks(size)
        self.landmarks = (base[None] + rng.normal(0, 0.5, (n, 68, 2))).astype(np.float32)
        self.intensities = rng.integers(0, 6, (n, len(AUS))).astype(np.float32)
        self.intensities[rng.random((n, len(AUS))) < 0.1] = np.nan  # unknown labels
        yy, xx = np.mgrid[0:size, 0:size]
        self.images = np.empty((n, size, size, 3), np.uint8)
        points = au_points(self.landmarks, AUS)  # (n, A, 2, 2)
        for i in range(n):
            canvas = 60 + rng.normal(0, 8, (size, size))
            for a in range(len(AUS)):
                value = np.nan_to_num(self.intensities[i, a])
                for p in points[i, a]:
                    canvas += (
                        25 * value * np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * (size / 40) ** 2))
                    )
            self.images[i] = np.clip(canvas, 0, 255).astype(np.uint8)[..., None]
        self.index = pd.DataFrame({"subject": [f"S{i % subjects}" for i in range(n)]})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "image": self.images[i].copy(),
            "landmarks": self.landmarks[i].copy(),
            "intensities": self.intensities[i].copy(),
            "subject": self.index["subject"][i],
            "sequence": "T1",
            "frame": i,
        }


def tiny_config(*overrides: str) -> Config:
    """A quarter-width, depth-2 Hourglass on 64-pixel crops (16x16 maps): ~0.1 s per step on 2 cores."""
    base = [
        "model.name=bmvc2018-tiny",
        "model.overrides={width: 32, depth: 2}",
        "data.image_size=64",
        "data.split=none",
        "train.batch_size=8",
        "train.workers=0",
        "train.epochs=2",
        "schedule.milestones=[100]",
        "log.tensorboard=false",
        "checkpoint.every_steps=0",
    ]
    return apply_overrides(Config(), [*base, *overrides])


def test_masked_loss_ignores_unknown_maps() -> None:
    pred = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.randn(2, 3, 4, 4)
    weights = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    loss = masked_mse(pred, target, weights)
    loss.backward()
    assert pred.grad[0, 1].abs().sum() == 0 and pred.grad[1, 2].abs().sum() == 0
    expected = ((pred - target) ** 2 * weights[:, :, None, None]).sum() / pred.numel()
    assert torch.allclose(loss, expected)


def test_flip_swaps_au_points_and_is_an_involution() -> None:
    landmarks = face_landmarks(64)
    flipped = flip_landmarks(landmarks, 64)
    np.testing.assert_allclose(flip_landmarks(flipped, 64), landmarks, atol=1e-5)
    points, points_flipped = au_points(landmarks, (6, 12)), au_points(flipped, (6, 12))  # (A, 2, 2)
    mirrored = points.copy()
    mirrored[..., 0] = 63 - mirrored[..., 0]
    np.testing.assert_allclose(points_flipped, mirrored[:, ::-1], atol=1e-4)  # left and right swap


def test_augmentation_is_deterministic_and_moves_landmarks_with_the_image() -> None:
    cache = MemoryCache(1, size=64)
    sample = cache[0]
    config = apply_overrides(
        Config(), ["augment.flip=false", "augment.colour=0", "augment.landmark_noise_px=0"]
    )
    a = augment_sample(sample["image"], sample["landmarks"], config.augment, np.random.default_rng([1, 2, 3]))
    b = augment_sample(sample["image"], sample["landmarks"], config.augment, np.random.default_rng([1, 2, 3]))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # The brightest blob (AU17 chin points at intensity > 0) follows the warped landmarks.
    dataset = HeatmapDataset(cache, [0], _spec(), config.augment, seed=0)
    item = dataset[(0, 0)]
    assert item["heatmaps"].shape == (3, 16, 16) and item["image"].shape == (3, 64, 64)


def test_grey_and_blur_augmentation_change_only_the_image_and_leave_other_draws_alone() -> None:
    sample = MemoryCache(1, size=64)[0]
    colour = np.full((64, 64, 3), (200, 80, 40), np.uint8)
    plain = apply_overrides(Config(), [])
    grey = apply_overrides(Config(), ["augment.grey=1", "augment.blur=1"])
    a = augment_sample(colour, sample["landmarks"], plain.augment, np.random.default_rng(5))
    b = augment_sample(colour, sample["landmarks"], grey.augment, np.random.default_rng(5))
    # The geometry and landmark draws come first, so the landmarks are the same with or without them.
    np.testing.assert_array_equal(a[1], b[1])
    assert (b[0][..., 0] == b[0][..., 1]).all() and (b[0][..., 1] == b[0][..., 2]).all()
    assert not (a[0][..., 0] == a[0][..., 2]).all()


def _spec(input_size: int = 64) -> Any:
    from facskit.models import create_model

    return create_model("bmvc2018-tiny", width=32, depth=2, input_size=input_size, aus=AUS).spec


def test_a_crop_larger_than_the_input_is_resized_before_anything_else() -> None:
    """128 crops for a 64-input model: the validation item must be what inference computes from the full
    crop (preprocess's resize; the targets drawn from the full-size landmarks), and the augmented item must
    come out at the input size with its landmarks (hence heatmaps) in that grid."""
    from facskit.models.spec import preprocess
    from facskit.targets import gaussian_heatmaps

    cache = MemoryCache(2, size=128)
    spec = _spec(64)
    item = HeatmapDataset(cache, [0, 1], spec, augment=None)[(0, 1)]
    sample = cache[1]
    expected = preprocess(sample["image"][None], spec)[0]
    assert item["image"].shape == (3, 64, 64)
    one_grey_level = 1.0 / min(spec.std)  # the resized crop is rounded to uint8
    difference = (item["image"] - expected).abs()
    assert float(difference.max()) <= 1.01 * one_grey_level
    assert float(difference.mean()) < 0.5 * one_grey_level
    full = gaussian_heatmaps(
        au_points(sample["landmarks"][None], AUS).astype(np.float32),
        np.nan_to_num(sample["intensities"])[None],
        spec.convention,
        crop_size=128,
        map_size=spec.map_size,
    )[0]
    np.testing.assert_allclose(item["heatmaps"].numpy(), full, atol=1e-4)
    config = apply_overrides(Config(), [])
    augmented = HeatmapDataset(cache, [0], spec, config.augment, seed=0)[(0, 0)]
    assert augmented["image"].shape == (3, 64, 64) and augmented["heatmaps"].shape == (3, 16, 16)


def test_step_sampler_splits_steps_across_ranks_and_micro_batches() -> None:
    single = list(StepSampler(40, 8, grad_accum=1, world_size=1, seed=3))
    parts = [list(StepSampler(40, 8, grad_accum=2, world_size=2, rank=r, seed=3)) for r in range(2)]
    assert len(single) == 5 and all(len(p) == 10 for p in parts)
    for step in range(5):
        together = sorted(x for r in range(2) for m in range(2) for x in parts[r][2 * step + m])
        assert together == sorted(single[step])
    resumed = StepSampler(40, 8, seed=3)
    resumed.set_epoch(0, start_step=3)
    assert list(resumed) == single[3:]
    with pytest.raises(ValueError, match="not divisible"):
        StepSampler(40, 6, grad_accum=4)


def test_tiny_model_overfits_32_images(tmp_path: Path) -> None:
    cache = MemoryCache(32, size=64)
    losses: list[float] = []
    config = tiny_config("augment.enabled=false", "train.epochs=16", "optim.lr=2e-3")
    train(config, tmp_path / "run", cache=cache, quiet=True, on_step=lambda step, loss: losses.append(loss))
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    assert last < first / 10, (first, last)
    history = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(history["epoch"]) == list(range(1, 17))


class Killed(RuntimeError):
    pass


def test_resume_after_kill_is_bitwise_exact(tmp_path: Path) -> None:
    cache = MemoryCache(40, size=64, subjects=5)
    config = tiny_config(
        "data.split=kfold", "data.folds=5", "train.epochs=3", "checkpoint.every_steps=2", "train.workers=1"
    )
    reference = train(config, tmp_path / "reference", cache=cache, quiet=True)
    # Mid-run (step 7 of 12: inside epoch 2, between the checkpoints of steps 6 and 8). It was an unseeded
    # draw from [1, 12), and a draw of 1 left no last.ckpt to resume from (one CI run failed that way).
    kill_at = reference.global_step // 2 + 1
    assert kill_at > 2 and kill_at % 2 == 1

    def kill(step: int, loss: float) -> None:
        if step == kill_at:
            raise Killed(f"simulated kill at step {step}")

    with pytest.raises(Killed):
        train(config, tmp_path / "resumed", cache=cache, quiet=True, on_step=kill)
    # The wall time of the killed session travels in last.ckpt, so metrics.csv counts the whole run: mark
    # it with an hour the resumed session cannot have taken.
    saved = torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=False)
    assert saved["extra"]["resume"]["seconds"] > 0
    saved["extra"]["resume"]["seconds"] = 3600.0
    torch.save(saved, tmp_path / "resumed" / "last.ckpt")
    resumed = train(config, tmp_path / "resumed", cache=cache, quiet=True)
    seconds = pd.read_csv(tmp_path / "resumed" / "metrics.csv")["seconds"]
    assert seconds.iloc[-1] > 3600.0 and seconds.is_monotonic_increasing
    assert resumed.global_step == reference.global_step
    a = torch.load(reference.last_checkpoint, weights_only=True)
    b = torch.load(resumed.last_checkpoint, weights_only=True)
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), f"{name} differs after a kill at step {kill_at}"
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "reference" / "metrics.csv").drop(columns="seconds"),
        pd.read_csv(tmp_path / "resumed" / "metrics.csv").drop(columns="seconds"),
    )
    assert (tmp_path / "resumed" / "best.ckpt").exists() and (tmp_path / "resumed" / "config.yaml").exists()


def test_cli_reports_config_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facskit.cli import main

    code = main(["train", "scc-lite", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "optim.lrr=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown config key 'optim.lrr'; valid keys in optim: name, lr" in err
    code = main(
        ["train", "scc-lite", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "train.seed=x"]
    )
    assert code == 2 and "expects int" in capsys.readouterr().err


def test_foreground_weight_counts_pixels_inside_the_gaussians_more() -> None:
    from facskit.train.loop import masked_mse

    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 1] = 3.0
    pred = torch.zeros(1, 1, 4, 4)
    pred[0, 0, 3, 3] = 1.0  # a false positive on the background
    weights = torch.ones(1, 1)
    plain = masked_mse(pred, target, weights)
    assert plain == pytest.approx((9.0 + 1.0) / 16)
    assert masked_mse(pred, target, weights, foreground_weight=10.0) == pytest.approx((90.0 + 1.0) / 16)
    weights[:] = 0.0  # an unknown label is ignored whatever the weighting
    assert masked_mse(pred, target, weights, foreground_weight=10.0) == 0.0


def test_kfold_validation_subjects_keep_model_selection_off_the_test_fold() -> None:
    import pandas as pd

    from facskit.config import load_config
    from facskit.errors import UsageError
    from facskit.train.dataset import split_frames

    subjects = [f"S{i:02d}" for i in range(12)]
    index = pd.DataFrame({"subject": np.repeat(subjects, 5)})
    cache = type("Cache", (), {"index": index, "__len__": lambda self: len(index)})()
    plain_train, plain_val = split_frames(cache, load_config("bmvc2018-lite", ["data.fold=2"]))
    train, val = split_frames(cache, load_config("bmvc2018-lite", ["data.fold=2", "data.val_subjects=2"]))
    test_subjects = set(index.subject[plain_val])  # without val_subjects, validation is the test fold
    assert set(index.subject[val]).isdisjoint(test_subjects) and index.subject[val].nunique() == 2
    assert set(index.subject[train]).isdisjoint(index.subject[val])
    assert sorted([*train, *val]) == sorted(plain_train.tolist())
    with pytest.raises(UsageError, match="data.split=kfold"):
        split_frames(cache, load_config("bmvc2018-lite", ["data.split=none", "data.val_subjects=2"]))
    with pytest.raises(UsageError, match="val_subjects must be in 1..7"):
        split_frames(cache, load_config("bmvc2018-lite", ["data.val_subjects=8"]))


@pytest.mark.parametrize(
    ("flags", "expected"), [({"amx_bf16"}, True), ({"avx512_bf16"}, True), ({"avx2"}, False)]
)
def test_bf16_cpu_auto_follows_the_cpu_flags(monkeypatch, flags: set[str], expected: bool) -> None:
    from facskit import device
    from facskit.train.optim import bf16_on_cpu

    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset(flags))
    assert bf16_on_cpu("auto") is expected
    assert bf16_on_cpu(True) is True and bf16_on_cpu(False) is False
