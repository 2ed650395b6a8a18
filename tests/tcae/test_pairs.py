"""Pair sampling: gaps within the curriculum's bounds, same track, deterministic, sharded; exact resume."""

import numpy as np
import pandas as pd
import pytest
import torch

from facskit.tcae.pairs import PairCurriculum, PairSampler, sample_pairs, tracks_from_index


def _index() -> pd.DataFrame:
    rows = []
    for subject in ("S1", "S2"):
        for sequence in ("a", "b"):
            # frames with holes: gaps must be measured in frame numbers, not positions
            frames = [f for f in range(1, 121) if f % 7 != 0]
            rows += [{"subject": subject, "sequence": sequence, "frame": f} for f in frames]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)  # shuffled rows


def test_curriculum_ramps_gap_and_window() -> None:
    c = PairCurriculum(min_gap=1, start_max_gap=2, end_max_gap=50, ramp_epochs=5, end_window=(0.4, 0.9))
    gaps = [c.max_gap(e) for e in range(8)]
    assert gaps[0] == 2 and gaps[4:] == [50] * 4
    assert all(a <= b for a, b in zip(gaps, gaps[1:], strict=False))
    assert c.window(0) == (0.0, 1.0) and c.window(10) == pytest.approx((0.4, 0.9))
    with pytest.raises(ValueError):
        PairCurriculum(start_max_gap=10, end_max_gap=5)


@pytest.mark.parametrize("min_gap,max_gap", [(1, 1), (1, 3), (5, 20)])
def test_pairs_respect_gap_and_track(min_gap: int, max_gap: int) -> None:
    index = _index()
    tracks = tracks_from_index(index)
    assert len(tracks) == 4
    pairs = sample_pairs(tracks, 2000, min_gap, max_gap, np.random.default_rng(0))
    s, t = index.iloc[pairs[:, 0]], index.iloc[pairs[:, 1]]
    assert (s["subject"].to_numpy() == t["subject"].to_numpy()).all()
    assert (s["sequence"].to_numpy() == t["sequence"].to_numpy()).all()
    gap = np.abs(s["frame"].to_numpy() - t["frame"].to_numpy())
    assert gap.min() >= min_gap and gap.max() <= max_gap
    if max_gap > min_gap:
        assert set(np.unique(gap)) >= {min_gap, max_gap}  # the whole range is used
        forward = (t["frame"].to_numpy() > s["frame"].to_numpy()).mean()
        assert 0.35 < forward < 0.65  # both directions


def test_sampler_follows_curriculum_deterministic_and_sharded() -> None:
    index = _index()
    c = PairCurriculum(min_gap=1, start_max_gap=2, end_max_gap=30, ramp_epochs=3)
    sampler = PairSampler(tracks_from_index(index), 256, c, seed=3)
    frames = index["frame"].to_numpy()
    for epoch in range(4):
        pairs = sampler.pairs(epoch)
        assert np.abs(frames[pairs[:, 0]] - frames[pairs[:, 1]]).max() <= c.max_gap(epoch)
    assert np.array_equal(sampler.pairs(2), PairSampler(sampler.tracks, 256, c, seed=3).pairs(2))
    assert not np.array_equal(sampler.pairs(2), sampler.pairs(3))
    # two DDP ranks: disjoint slices that together make the epoch; resume skips the first batches
    ranks = [PairSampler(sampler.tracks, 256, c, seed=3, rank=r, world_size=2) for r in (0, 1)]
    got = [np.concatenate(list(r.batches(1, 16))) for r in ranks]
    assert np.array_equal(np.sort(np.concatenate(got), axis=0), np.sort(sampler.pairs(1), axis=0))
    resumed = np.concatenate(list(ranks[0].batches(1, 16, start=3)))
    assert np.array_equal(resumed, got[0][3 * 16 :])


class _TinyCache:
    """A cache-like object: ``len``, ``image(i)``, ``index`` (what pretrain_tcae needs)."""

    def __init__(self) -> None:
        self.index = pd.DataFrame({"subject": "S1", "sequence": "a", "frame": np.arange(40)})
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (32, 32, 3))
        self.images = [np.roll(base, i // 4, axis=1).astype(np.uint8) for i in range(40)]
        self.path = "<tiny>"

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> np.ndarray:
        return self.images[i]


# A TCAE small enough for a few CPU training steps in a test (tcae-lite overrides; each test adds its run).
TINY_RUN = [
    "model.input_size=32",
    "model.filters=4",
    "model.embedding_size=8",
    "train.batch_size=8",
    "train.device=cpu",
    "train.threads=1",
]


def test_exact_resume(tmp_path) -> None:
    from facskit.tcae.config import load_tcae_config
    from facskit.tcae.pretrain import load_tcae, pretrain_tcae

    overrides = [
        *TINY_RUN,
        "data.pairs_per_epoch=32",
        "train.epochs=2",
        "run.checkpoint_every_steps=1",
        "run.log_every_steps=0",
    ]
    config = load_tcae_config("tcae-lite", overrides)
    cache = _TinyCache()
    pretrain_tcae(config, cache, tmp_path / "full", quiet=True)
    # interrupted after 3 of 8 steps (mid-epoch), then resumed with the rest of the run
    stopped = load_tcae_config("tcae-lite", [*overrides, "train.max_steps=3"])
    pretrain_tcae(stopped, cache, tmp_path / "split", quiet=True)
    pretrain_tcae(stopped, cache, tmp_path / "split", quiet=True, overrides=["train.max_steps=null"])
    full, info_full = load_tcae(tmp_path / "full")
    split, info_split = load_tcae(tmp_path / "split")
    assert info_full["step"] == info_split["step"] == 8
    for (name, a), b in zip(full.state_dict().items(), split.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert (tmp_path / "full" / "epoch-002.ckpt").is_file()


def test_field_mix_config_key() -> None:
    from facskit.config_loader import ConfigError
    from facskit.tcae.config import load_tcae_config

    assert load_tcae_config("tcae").model.spec().field_mix == "softmax"  # the paper's eq. 3
    config = load_tcae_config("tcae", ["model.field_mix=au_gate"])
    assert config.model.spec().field_mix == "au_gate"
    with pytest.raises(ConfigError, match="field_mix"):
        load_tcae_config("tcae", ["model.field_mix=sum"])


# The settings measured on track crops (README, benchmarks/results/tcae.md): what tcae-lite-track adds.
TRACK_SETTINGS = [
    "curriculum.mine_factor=4",
    "model.field_mix=au_gate",
    "model.pose_decoder=head",
    "model.au_within_head=true",
    "loss.sparsity=0.03",
    "loss.sparsity_with_twins=true",
    "loss.gate=0.01",
    "loss.gate_start_step=768",
    "loss.gate_ramp_steps=256",
]


def test_tcae_lite_track_preset_is_tcae_lite_with_the_measured_settings() -> None:
    from facskit.config import load_config
    from facskit.config_loader import ConfigError
    from facskit.tcae.config import load_tcae_config, tcae_config_to_dict

    track = tcae_config_to_dict(load_tcae_config("tcae-lite-track"))
    assert track == tcae_config_to_dict(load_tcae_config("tcae-lite", TRACK_SETTINGS))
    assert track != tcae_config_to_dict(load_tcae_config("tcae-lite"))
    with pytest.raises(ConfigError, match="presets: .*tcae-lite-track"):  # listed among the presets
        load_tcae_config("tcae-track")
    with pytest.raises(ConfigError, match="no config file or preset"):  # not a heatmap-model preset
        load_config("tcae-lite-track")


@pytest.mark.parametrize("held", [False, True])
def test_sparsity_with_twins_is_held_in_the_loop(tmp_path, held: bool) -> None:
    import json

    from facskit.tcae.config import load_tcae_config
    from facskit.tcae.pretrain import pretrain_tcae

    overrides = [
        *TINY_RUN,
        "data.pairs_per_epoch=16",
        "train.epochs=1",
        "run.log_every_steps=1",
        "loss.sparsity=10.0",  # large, so its share of the total is far above float rounding
        "loss.twin_start_step=100",
        f"loss.sparsity_with_twins={str(held).lower()}",
    ]
    pretrain_tcae(load_tcae_config("tcae-lite", overrides), _TinyCache(), tmp_path, quiet=True)
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "total" in s]
    assert len(steps) == 2 and all(s["sparsity_au"] > 0 for s in steps)
    for s in steps:  # during the hold the loss is L_rec alone, or L_rec + lambda_1 L1 without the flag
        expected = s["rec"] + (0.0 if held else 10.0 * s["sparsity_au"])
        assert s["total"] == pytest.approx(expected, rel=1e-5)


def test_gate_weight_starts_at_gate_start_step(tmp_path) -> None:
    import json

    from facskit.tcae.config import load_tcae_config
    from facskit.tcae.pretrain import pretrain_tcae

    overrides = [
        *TINY_RUN,
        "data.pairs_per_epoch=16",
        "train.epochs=1",
        "run.log_every_steps=1",
        "loss.sparsity=0",
        "loss.twin_start_step=100",  # the loss is L_rec (+ the gate term once it starts)
        "loss.gate=10.0",
        "loss.gate_start_step=1",
    ]
    pretrain_tcae(load_tcae_config("tcae-lite", overrides), _TinyCache(), tmp_path, quiet=True)
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "total" in s]
    assert len(steps) == 2 and all(s["gate_au"] > 0 for s in steps)
    assert steps[0]["total"] == pytest.approx(steps[0]["rec"], rel=1e-5)  # step 0: before the gate starts
    assert steps[1]["total"] == pytest.approx(steps[1]["rec"] + 10.0 * steps[1]["gate_au"], rel=1e-5)


def test_mining_keeps_the_most_different_of_each_group_of_candidates() -> None:
    """mine_factor k: every pair is the highest-scoring of its k candidates (the uniform draw of k x N),
    the same pairs for the same (seed, epoch), within the curriculum's gaps and tracks; k = 1 is the
    uniform sampler unchanged."""
    from facskit.tcae.pairs import FrameDifference

    index = _index()
    tracks = tracks_from_index(index)
    frames = index["frame"].to_numpy()
    plain = PairCurriculum(min_gap=1, start_max_gap=30, end_max_gap=30)
    mined = PairCurriculum(min_gap=1, start_max_gap=30, end_max_gap=30, mine_factor=4)
    assert np.array_equal(
        PairSampler(tracks, 64, plain, seed=1).pairs(0),
        sample_pairs(tracks, 64, 1, 30, np.random.default_rng([1, 0])),
    )

    def gap(pairs: np.ndarray) -> np.ndarray:  # a stand-in difference: the frame gap itself
        return np.abs(frames[pairs[:, 0]] - frames[pairs[:, 1]]).astype(float)

    sampler = PairSampler(tracks, 64, mined, seed=1, difference=gap)
    pairs = sampler.pairs(0)
    candidates = sample_pairs(tracks, 256, 1, 30, np.random.default_rng([1, 0])).reshape(64, 4, 2)
    assert np.array_equal(gap(pairs), gap(candidates.reshape(-1, 2)).reshape(64, 4).max(axis=1))
    assert gap(pairs).mean() > gap(candidates[:, 0]).mean() + 3  # mining moved the draw
    assert np.array_equal(pairs, PairSampler(tracks, 64, mined, seed=1, difference=gap).pairs(0))
    assert gap(pairs).max() <= 30
    with pytest.raises(ValueError, match="frame difference"):
        PairSampler(tracks, 64, mined)
    with pytest.raises(ValueError, match="mine_factor"):
        PairCurriculum(mine_factor=0)

    # the real score: mean |a - b| of uint8 thumbnails, without uint8 wrap-around
    thumbs = np.zeros((3, 4, 4, 3), np.uint8)
    thumbs[1] = 10
    thumbs[2, :2] = 250
    score = FrameDifference(thumbs)(np.array([[0, 1], [1, 0], [1, 2], [0, 0]]))
    assert score.tolist() == pytest.approx([10.0, 10.0, (240 * 24 + 10 * 24) / 48, 0.0])


def test_mine_factor_config_key_and_loop(tmp_path) -> None:
    from facskit.config_loader import ConfigError
    from facskit.tcae.config import load_tcae_config
    from facskit.tcae.pretrain import load_tcae, pretrain_tcae

    assert load_tcae_config("tcae-lite").curriculum.mine_factor == 1  # the paper: uniform pairs
    config = load_tcae_config(
        "tcae-lite",
        [*TINY_RUN, "curriculum.mine_factor=3", "data.pairs_per_epoch=16", "train.epochs=1"],
    )
    assert config.curriculum.curriculum().mine_factor == 3
    pretrain_tcae(config, _TinyCache(), tmp_path / "run", quiet=True)
    assert load_tcae(tmp_path / "run")[1]["step"] == 2
    with pytest.raises(ConfigError, match="mine_factor"):
        load_tcae_config("tcae-lite", ["curriculum.mine_factor=0"])


def test_landmark_residual_scores_shape_change_not_head_motion() -> None:
    """An affine move of every landmark (head motion, the crop's shifts) scores 0; moving the mouth alone
    scores its share (benchmarks/tcae_diagnostics.py's non-rigid motion)."""
    from facskit.tcae.pairs import LandmarkResidual

    rng = np.random.default_rng(0)
    points = rng.normal(size=(3, 68, 2)) * 20
    points[1] = points[0] @ np.array([[1.1, 0.1], [-0.05, 0.9]]).T + (3.0, -2.0)  # affine: a head move
    points[2] = points[0]
    points[2, 48:] += (0.0, 1.0)  # the mouth's 20 points move 1 px down
    index = pd.DataFrame({f"l{axis}_{i}": points[:, i, k] for i in range(68) for k, axis in enumerate("xy")})
    score = LandmarkResidual.of_index(index)(np.array([[0, 1], [1, 0], [0, 2], [2, 2]]))
    assert score[0] == pytest.approx(0, abs=1e-6) and score[1] == pytest.approx(0, abs=1e-6)
    assert 0.2 < score[2] < 20 / 68 + 0.2 and score[3] == pytest.approx(0, abs=1e-6)


def test_removed_options_are_unknown_keys_but_old_runs_still_resume() -> None:
    """A config naming a measured-and-removed option is an unknown key; a run's stored config that holds
    one at its no-op value (written before the removal) reads as the same config, any other value is an
    error naming it."""
    from facskit.config_loader import ConfigError
    from facskit.tcae.config import load_tcae_config, stored_tcae_config, tcae_config_to_dict

    for key in (
        "model.pose_field_grid=2",
        "loss.pose_start_step=10",
        "train.grad_clip=1",
        "curriculum.mine_score=landmarks",
    ):
        with pytest.raises(ConfigError, match="unknown config key"):
            load_tcae_config("tcae-lite", [key])
    config = load_tcae_config("tcae-lite-track")
    old = tcae_config_to_dict(config)
    old["model"].update(pose_field_grid=None, au_field_residual=None, head_support=None, au_moves_head=None)
    old["curriculum"]["mine_score"] = "frames"
    old["loss"].update(pose_start_step=0, pose_ramp_steps=0, au_start_step=0, au_ramp_steps=0)
    old["train"]["grad_clip"] = 0.0
    assert stored_tcae_config(old) == config
    old["loss"]["pose_start_step"] = 600
    with pytest.raises(ConfigError, match=r"^TCAE option loss.pose_start_step=600 was removed"):
        stored_tcae_config(old)
