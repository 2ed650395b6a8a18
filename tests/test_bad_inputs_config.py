"""Hostile training and TCAE configs: every numeric field out of its declared range, a fold the data cannot
give and an absurd model size are one-line errors (exit 2, or 1 for the data), never a traceback or a run
that exits 0 having trained nothing.

The configs and the small prepared cache are generated here; no fixture files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facskit.config import Config, ConfigError, Range, apply_overrides, load_config
from facskit.data.folds import subject_folds
from facskit.errors import DatasetError
from facskit.tcae.config import load_tcae_config

# (override, the start of the error): each one traced back or silently trained nothing before.
BAD_TRAINING_OVERRIDES = [
    ("train.epochs=0", "config key 'train.epochs' must be >= 1, got 0"),
    ("train.epochs=-1", "config key 'train.epochs' must be >= 1, got -1"),
    ("train.batch_size=0", "config key 'train.batch_size' must be >= 1"),
    ("train.batch_size=-8", "config key 'train.batch_size' must be >= 1"),
    ("optim.weight_decay=-0.1", "config key 'optim.weight_decay' must be >= 0"),
    ("optim.lr=.nan", "config key 'optim.lr' must be a finite number"),
    ("optim.lr=nan", "config key 'optim.lr' must be a finite number"),
    ("optim.lr=0", "config key 'optim.lr' must be > 0"),
    ("optim.lr=-inf", "config key 'optim.lr' must be a finite number"),
    ("train.grad_accum=0", "config key 'train.grad_accum' must be >= 1"),
    ("data.fold=3", "config key 'data.fold' is 3, but there are only 3 folds"),
    ("data.fold=-1", "config key 'data.fold' must be >= 0"),
    ("data.folds=1", "config key 'data.folds' must be >= 2"),
    ("train.workers=-1", "config key 'train.workers' must be >= 0"),
    ("augment.scale=-0.5", "config key 'augment.scale' must be >= 0 and < 1"),
    ("augment.rotate_deg=-5", "config key 'augment.rotate_deg' must be >= 0"),
    ("augment.colour=.inf", "config key 'augment.colour' must be a finite number"),
    ("schedule.milestones=[5,-1]", "config key 'schedule.milestones[1]' must be >= 0"),
    ("schedule.gamma=0", "config key 'schedule.gamma' must be > 0"),
    ("train.seed=-1", "config key 'train.seed' must be >= 0"),
    ("train.max_steps=0", "config key 'train.max_steps' must be >= 1"),
    ("train.foreground_weight=nan", "config key 'train.foreground_weight' must be a finite number"),
    ("checkpoint.every_steps=-1", "config key 'checkpoint.every_steps' must be >= 0"),
    ("data.image_size=40000", "config key 'data.image_size' must be >= 4 and <= 1024"),
    ("train.batch_size=10 train.grad_accum=3", "train.batch_size 10 is not divisible by train.grad_accum 3"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_TRAINING_OVERRIDES)
def test_out_of_range_training_fields_are_config_errors(overrides: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_overrides(Config(), overrides.split(" "))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_valid_edges_and_every_preset_still_load() -> None:
    config = apply_overrides(
        Config(),
        [
            "train.workers=0",
            "data.fold=2",
            "optim.weight_decay=0",
            "augment.enabled=false",
            "augment.scale=0",
        ],
    )
    assert (config.train.workers, config.data.fold, config.optim.weight_decay) == (0, 2, 0.0)
    # A fold beyond the folds only matters when the split uses folds.
    assert apply_overrides(Config(), ["data.split=none", "data.fold=7"]).data.fold == 7
    for name in ("scc-bp4d", "scc-lite", "bmvc2018-lite", "default-model"):
        load_config(name)


def test_a_yaml_file_with_a_bad_value_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("base: scc-lite\ntrain:\n  epochs: 0\n")
    with pytest.raises(ConfigError, match=r"run.yaml: config key 'train.epochs' must be >= 1"):
        load_config(path)


def test_range_describes_itself() -> None:
    assert Range(ge=0, lt=1).describe() == ">= 0 and < 1"
    Range(gt=0).check(1e-9, "x")
    with pytest.raises(ConfigError, match="'x' must be > 0, got 0"):
        Range(gt=0).check(0, "x")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", "'train.epochs' must be >= 1"),
        ("train.batch_size=0", "'train.batch_size' must be >= 1"),
        ("optim.lr=nan", "'optim.lr' must be a finite number"),
        ("optim.weight_decay=-1", "'optim.weight_decay' must be >= 0"),
        ("loss.cycle=-1", "'loss.cycle' must be >= 0"),
        ("data.max_drift=0", "'data.max_drift' must be > 0"),
        ("curriculum.start_window=[0.5]", "'curriculum.start_window' must be two numbers"),
        ("curriculum.end_window=[0, 2]", "'curriculum.end_window[1]' must be >= 0 and <= 1"),
        ("model.input_size=40000", "'model.input_size' must be >= 16 and <= 1024"),
        ("model.filters=100000", "'model.filters' must be >= 1 and <= 512"),
        ("train.seed=-1", "'train.seed' must be >= 0"),
    ],
)
def test_out_of_range_tcae_fields_are_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_tcae_config("tcae-lite", [override])


# --- through the CLI ---------------------------------------------------------------------------------------


def write_cache(root: Path, subjects: int, frames_per_subject: int = 4, size: int = 32) -> Path:
    """A small prepared cache of random crops, every face's landmarks on one made-up grid."""
    from helpers import write_prepared_cache

    rng = np.random.default_rng(0)
    landmarks = np.repeat(8.0 + np.arange(68)[:, None] % 16, 2, axis=1)

    def faces():
        for s in range(subjects):
            for f in range(frames_per_subject):
                row = {"subject": f"S{s}", "sequence": "a", "frame": f, "AU06": float(f % 6), "AU12": 1.0}
                yield "all", row, rng.integers(0, 256, (size, size, 3), dtype=np.uint8), landmarks

    return write_prepared_cache(root, faces(), {"aus": [6, 12]}, shard_size=8)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from facskit.cli import main

    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "override",
    ["train.epochs=0", "train.epochs=-1", "train.batch_size=0", "optim.lr=nan", "train.grad_accum=0",
     "train.workers=-1", "augment.scale=-1", "optim.weight_decay=-1", "data.fold=9"],
)  # fmt: skip
def test_train_cli_refuses_bad_values_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str
) -> None:
    run = tmp_path / "run"
    code, err = run_cli(
        ["train", "bmvc2018-lite", "--data", str(tmp_path), "--out", str(run), override], capsys
    )
    assert code == 2
    assert err.startswith("facskit train: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert override.split("=")[0] in err
    assert not run.exists()  # nothing started


def test_train_cli_refuses_more_folds_than_subjects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = write_cache(tmp_path / "cache", subjects=2)
    with pytest.raises(DatasetError, match="cannot make 3 subject-exclusive folds from 2 subjects"):
        subject_folds(["S0", "S1"], 3)
    with pytest.raises(ValueError):  # still a ValueError for the callers that catch one
        subject_folds(["S0", "S1"], 3)
    argv = ["train", "scc-lite", "--data", str(cache), "--out", str(tmp_path / "run"), "train.workers=0"]
    code, err = run_cli(argv, capsys)
    assert code == 1
    assert "cannot make 3 subject-exclusive folds from 2 subjects" in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.overrides.width=100000000", "exceeds facskit's bound"),
        ("model.overrides.width=1e8", "width must be int, not '1e8'"),
        ("model.overrides.width=12", "width must be a multiple of 8"),
        ("model.overrides.depth=true", "depth must be int"),
        ("model.overrides.input_size=40000", "input_size must be in 4..1024"),
    ],
)
def test_train_cli_refuses_an_absurd_model_before_allocating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    cache = write_cache(tmp_path / "cache", subjects=2)
    argv = ["train", "bmvc2018-lite", "--data", str(cache), "--out", str(tmp_path / "run")]
    code, err = run_cli(
        [*argv, "model.name=bmvc2018-tiny", "data.split=none", "train.workers=0", override], capsys
    )
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "last.ckpt").exists()


def test_pretrain_tcae_cli_refuses_bad_values_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["pretrain-tcae", "tcae-lite", "--videos", str(tmp_path), "--out", str(tmp_path / "run")]
    for override in ("train.epochs=0", "optim.lr=nan", "train.batch_size=-1"):
        code, err = run_cli([*argv, override], capsys)
        assert code == 2 and override.split("=")[0] in err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_a_diverging_run_ends_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = write_cache(tmp_path / "cache", subjects=2, frames_per_subject=8)
    argv = ["train", "bmvc2018-lite", "--data", str(cache), "--out", str(tmp_path / "run"), "--quiet"]
    tiny = ["model.name=bmvc2018-tiny", "model.overrides={width: 8, depth: 1}", "data.image_size=32"]
    rest = ["data.split=none", "train.workers=0", "train.batch_size=4", "log.tensorboard=false"]
    code, err = run_cli([*argv, *tiny, *rest, "optim.lr=1e30", "train.epochs=5"], capsys)
    assert code == 1
    assert "training diverged (loss is " in err and err.count("\n") == 1 and "Traceback" not in err
