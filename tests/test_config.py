"""Configs: presets load, overrides are typed, unknown keys and wrong types are errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from facskit.config import (
    Config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
    training_presets,
)
from facskit.config_loader import TRAINERS, ConfigError, list_presets

TRAINING_PRESETS = ("bmvc2018-fera2015", "scc-bp4d", "scc-disfa", "bmvc2018-lite", "scc-lite")


def test_every_training_preset_loads() -> None:
    # facskit/configs also holds presets of other trainers (tcae*.yaml for pretraining) with their own schema.
    presets = training_presets()
    for name in TRAINING_PRESETS:
        assert name in presets
    for name in presets:
        assert isinstance(load_config(name), Config)


def test_every_preset_names_its_trainer_and_each_command_lists_its_own() -> None:
    for name in list_presets():
        text = (Path(__file__).parents[1] / "facskit" / "configs" / f"{name}.yaml").read_text()
        trainer = yaml.safe_load(text)["trainer"]
        assert trainer in TRAINERS, name
        assert name in list_presets(trainer)
    assert sorted(list_presets("heatmap") + list_presets("tcae")) == list_presets()
    assert "tcae-lite" in list_presets("tcae") and "tcae-lite" not in training_presets()


def test_a_file_for_another_trainer_names_the_command_that_runs_it(tmp_path: Path) -> None:
    path = tmp_path / "pretrain.yaml"
    path.write_text("base: tcae-lite\n")  # not a training preset: base lookup fails as before
    with pytest.raises(ConfigError, match="base 'tcae-lite': no config file or preset"):
        load_config(path)
    path.write_text("trainer: tcae\ntrain:\n  epochs: 2\n")
    with pytest.raises(
        ConfigError, match=r"pretrain.yaml is a config for trainer 'tcae', not 'heatmap': .*pretrain-tcae"
    ):
        load_config(path)
    path.write_text("trainer: heatmap\ntrain:\n  epochs: 2\n")  # its own trainer, said or not
    assert load_config(path).train.epochs == 2


def test_scc_presets_follow_the_paper() -> None:
    for name in ("scc-bp4d", "scc-disfa"):
        config = load_config(name)
        assert config.optim.name == "adam"
        assert config.optim.lr == 5e-4 and config.optim.weight_decay == 1e-5
        assert config.train.batch_size == 32
        assert config.train.epochs == 15 and config.schedule.milestones == [10, 15]
        assert config.schedule.gamma == 0.1


def test_overrides_are_typed() -> None:
    config = load_config(
        "scc-bp4d",
        ["optim.lr=1e-3", "train.epochs=3", "augment.flip=false"],
    )
    assert config.optim.lr == 1e-3 and isinstance(config.optim.lr, float)
    assert config.train.epochs == 3
    assert config.augment.flip is False
    config = apply_overrides(config, ["model.overrides.width=32", "schedule.milestones=[1, 2]"])
    assert config.model.overrides == {"aus": [6, 10, 12, 14, 17], "width": 32}
    assert config.schedule.milestones == [1, 2]
    config = apply_overrides(config, ["data.image_size=null", "train.max_steps=5", "optim.weight_decay=0"])
    assert config.data.image_size is None and config.train.max_steps == 5
    assert config.optim.weight_decay == 0.0 and isinstance(config.optim.weight_decay, float)
    assert apply_overrides(config, ["train.bf16_cpu=auto"]).train.bf16_cpu == "auto"
    assert apply_overrides(config, ["train.bf16_cpu=true"]).train.bf16_cpu is True


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'; valid keys in optim: name, lr,"),
        ("optimiser.lr=1", "unknown config key 'optimiser'"),
        ("epochs=3", "unknown config key 'epochs'; valid keys in the config: model, data"),
        ("train.batch_size=big", "config key 'train.batch_size' expects int, got 'big'"),
        ("train.batch_size=2.5", "expects int"),
        ("augment.flip=3", "config key 'augment.flip' expects bool"),
        ("optim.name=lion", "config key 'optim.name' expects"),
        ("schedule.milestones=5", "expects list[int]"),
        ("optim=3", "is a section"),
        ("optim.lr", "is not key=value"),
        ("train.bf16_cpu=sometimes", "config key 'train.bf16_cpu' expects bool | 'auto'"),
    ],
)
def test_bad_overrides_are_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        apply_overrides(Config(), [override])
    assert message in str(error.value)


def test_yaml_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  betas: [0.9, 0.99]\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown config key 'optim.betas'"):
        load_config(path)
    path.write_text("optim:\n  lr: 1e-3\n")  # YAML 1.1 reads 1e-3 as a string; it must still be a float
    assert load_config(path).optim.lr == 1e-3
    with pytest.raises(ConfigError, match="no config file or preset named 'nope'; presets: "):
        load_config("nope")


def test_save_and_reload_round_trip(tmp_path: Path) -> None:
    config = load_config("scc-lite", ["optim.lr=0.01", "model.init_from=/x/y.ckpt"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text())) == config
    assert config_from_dict(config_to_dict(config)) == config


def test_base_lays_a_file_over_a_preset_or_another_file(tmp_path: Path) -> None:
    variant = tmp_path / "variant.yaml"
    variant.write_text("base: scc-lite\noptim:\n  lr: 0.01\ntrain:\n  epochs: 2\n")
    assert load_config(variant) == load_config("scc-lite", ["optim.lr=0.01", "train.epochs=2"])
    # a base path is read relative to the file that names it, and chains
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "again.yaml").write_text("base: ../variant.yaml\ntrain:\n  epochs: 3\n")
    again = load_config(tmp_path / "sub" / "again.yaml")
    assert again == load_config("scc-lite", ["optim.lr=0.01", "train.epochs=3"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: no-such-preset\n", r"run.yaml: base 'no-such-preset': no config file or preset"),
        ("base: run.yaml\n", "base chain comes back to it"),
        ("base: scc-lite\noptim:\n  betas: [0.9, 0.99]\n", r"run.yaml: unknown config key 'optim.betas'"),
        ("- a list\n", "run.yaml is not a mapping of config sections"),
    ],
)
def test_base_errors_name_the_file_and_the_base(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
