"""The training schema of the heatmap AU networks (`facskit train`, `crossval`): a dataclass per section.

A run is fully described by a :class:`Config`. It is read from a preset name (``scc-bp4d``, a file in
``facskit/configs/`` with ``trainer: heatmap``) or a YAML path, then command-line overrides with dotted keys
are applied (``optim.lr=1e-3 train.epochs=3``), all through :mod:`facskit.config_loader`, which checks
every key, type and :class:`Range`. The constraints between fields are checked here
(:func:`config_from_dict`). The resolved config is written as ``config.yaml`` in the run folder and stored
inside every checkpoint, so a checkpoint alone says how it was trained.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from facskit import config_loader
from facskit.config_loader import NON_NEGATIVE, POSITIVE, SEED, ConfigError, Range, build_config

__all__ = [
    "TRAINER",
    "AugmentConfig",
    "CheckpointConfig",
    "Config",
    "DataConfig",
    "LogConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
    "training_presets",
]

# The ``trainer:`` of this schema's presets (facskit.config_loader.TRAINERS).
TRAINER = "heatmap"


@dataclass
class ModelConfig:
    # Registry name of the network (facskit.models.list_models()), e.g. "bmvc2018" or "scc_bp4d".
    name: str = "bmvc2018"
    # Keyword arguments passed to create_model(name, **overrides), e.g. {width: 32} for a slim variant.
    overrides: dict[str, Any] = field(default_factory=dict)
    # Checkpoint whose weights initialise the network before training (a facskit checkpoint or a TCAE run
    # whose encoder initialises the trunk); parameters whose name and shape match are copied, the rest
    # (e.g. a head with another AU count) keep their fresh initialisation. None: train from scratch.
    init_from: str | None = None
    # Under DDP on CUDA, convert BatchNorm to SyncBatchNorm so statistics use the global batch.
    sync_bn: bool = False
    # Keep BatchNorm layers in eval mode (running statistics, not updated): for fine-tuning with tiny
    # batches, and what makes N-process CPU training match one process exactly.
    freeze_bn: bool = False


@dataclass
class DataConfig:
    # Prepared cache folder (``facskit prepare``); the CLI's --data sets it.
    cache: str = ""
    # More caches whose every frame joins the training set only (never validation, so best.ckpt and the
    # split stay those of `cache`), e.g. real faces labelled by `facskit teach`: AUs a cache does not label
    # are unknown there and masked out of the loss. max_train_frames applies to `cache` alone.
    extra_caches: list[str] = field(default_factory=list)
    # How subjects are split into training and validation: "kfold" holds out fold `fold` of a
    # subject-exclusive k-fold CV; "fera2015" trains on the FERA 2015 training subjects and validates on
    # its development subjects (BP4D); "none" trains on every frame with no validation (best.ckpt = last).
    split: Literal["kfold", "fera2015", "none"] = "kfold"
    # Held-out fold (0 .. folds-1) used for validation and best.ckpt when split is "kfold".
    fold: Annotated[int, NON_NEGATIVE] = 0
    # k of the subject-exclusive k-fold cross-validation (3 in the DISFA and BP4D protocols).
    folds: Annotated[int, Range(ge=2)] = 3
    # Seed of the subject-to-fold assignment; keep it fixed across folds of one experiment.
    fold_seed: Annotated[int, SEED] = 0
    # With split "kfold": validate (and choose best.ckpt) on this many subjects taken out of the training
    # folds instead of on the held-out fold, which is the test set of a cross-validation. 0 validates on
    # the held-out fold (then only last.ckpt is a fair test-set model).
    val_subjects: Annotated[int, NON_NEGATIVE] = 0
    # Network input side in pixels; None uses the model spec's input_size (256 for the paper models).
    image_size: Annotated[int | None, Range(ge=4, le=1024)] = None
    # Use only the first N training frames (overfitting checks, quick experiments); None: all.
    max_train_frames: Annotated[int | None, POSITIVE] = None
    # Use only the first N validation frames; None: all.
    max_val_frames: Annotated[int | None, POSITIVE] = None


@dataclass
class AugmentConfig:
    # Master switch; False trains on the aligned crops as they are (and skips every item below).
    enabled: bool = True
    # Horizontal flip with probability 0.5: the image is mirrored and the landmarks permuted left/right,
    # so the targets of left/right AU points swap with the face.
    flip: bool = True
    # Rotation drawn uniformly from [-rotate_deg, rotate_deg] degrees about the crop centre.
    rotate_deg: Annotated[float, Range(ge=0, le=180)] = 10.0
    # Scale drawn uniformly from [1 - scale, 1 + scale].
    scale: Annotated[float, Range(ge=0, lt=1)] = 0.05
    # Shift drawn uniformly from [-shift, shift] of the crop side, per axis.
    shift: Annotated[float, Range(ge=0, le=1)] = 0.03
    # Colour jitter amplitude: brightness, contrast and saturation factors in [1 - colour, 1 + colour].
    colour: Annotated[float, Range(ge=0, le=1)] = 0.2
    # Gaussian noise (sigma, pixels of the 256 crop) added to the landmarks the targets are drawn from,
    # the kind of landmark error BMVC'18 shows the network tolerates (Section 5.3).
    landmark_noise_px: Annotated[float, NON_NEGATIVE] = 1.0
    # Probability of turning the crop grey (luma in all three channels): real archives and some cameras
    # are monochrome, and a network that has only seen colour reads a grey face's skin as something else.
    grey: Annotated[float, Range(ge=0, le=1)] = 0.0
    # Probability of a Gaussian blur (sigma uniform in 0.5-2 pixels of the 256 crop): webcam and
    # compressed video are softer than the crops training sees.
    blur: Annotated[float, Range(ge=0, le=1)] = 0.0


@dataclass
class OptimConfig:
    # Optimiser: Adam is the SCC paper's choice (AAAI'20, Section 4.1).
    name: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    lr: Annotated[float, Range(gt=0)] = 5e-4
    weight_decay: Annotated[float, NON_NEGATIVE] = 1e-5
    # Momentum for sgd and rmsprop (ignored by Adam).
    momentum: Annotated[float, Range(ge=0, le=1)] = 0.0


@dataclass
class ScheduleConfig:
    # Epochs after which the learning rate is multiplied by gamma (MultiStepLR, stepped once per epoch).
    milestones: list[Annotated[int, NON_NEGATIVE]] = field(default_factory=lambda: [10, 15])
    gamma: Annotated[float, Range(gt=0)] = 0.1


@dataclass
class TrainConfig:
    # Passes over the training split.
    epochs: Annotated[int, POSITIVE] = 15
    # Global batch per optimiser step, summed over all DDP ranks and accumulation micro-batches, so the
    # same config gives the same optimisation on 1 or N GPUs; it must be divisible by
    # world_size * grad_accum.
    batch_size: Annotated[int, POSITIVE] = 32
    # Micro-batches per optimiser step (gradient accumulation) to fit a large batch in little memory.
    grad_accum: Annotated[int, POSITIVE] = 1
    # DataLoader worker processes per rank (0 loads in the main process).
    workers: Annotated[int, NON_NEGATIVE] = 4
    # Batches each worker prepares ahead.
    prefetch: Annotated[int, POSITIVE] = 2
    # Mixed precision on CUDA (bf16 autocast where supported, else fp16 with a gradient scaler);
    # ignored on CPU. It speeds up the paper-size networks; the lite presets turn it off, having measured
    # it cost ICC (about 0.05 after 12 epochs) for no speed.
    amp: bool = True
    # bf16 autocast on CPU: true, false (exact fp32), or "auto": on where the CPU has AVX-512 BF16 or AMX
    # (1.3-1.5x the fp32 training rate of the lite networks on one core of an AMX Xeon,
    # BENCHMARKS.md, "bf16 training on the CPU"), off elsewhere, where bf16 is emulated and slower than fp32.
    bf16_cpu: bool | Literal["auto"] = False
    # Seed of initialisation, sampling order and augmentation: two runs with one seed are bitwise equal
    # on CPU.
    seed: Annotated[int, SEED] = 0
    # "auto" (cuda if available, else cpu), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # Stop after this many optimiser steps (smoke tests, benchmarks); None: run all epochs.
    max_steps: Annotated[int | None, POSITIVE] = None
    # Frames per forward pass during validation (per rank); None: the training micro-batch.
    eval_batch_size: Annotated[int | None, POSITIVE] = None
    # Weight of heatmap pixels inside a target Gaussian (target > 1% of the intensity scale) relative to
    # background pixels in the training loss. 1 is the papers' plain MSE. When AUs are rare and maps small
    # (32x32 lite models), background pixels dominate and a network can sit at "all zero" for epochs;
    # a weight of 5-20 makes the few foreground pixels count. Validation loss is always plain MSE.
    foreground_weight: Annotated[float, Range(gt=0)] = 1.0


@dataclass
class CheckpointConfig:
    # Also write last.ckpt every N optimiser steps inside an epoch, so a killed run resumes mid-epoch and
    # loses at most N steps; 0 saves only at the end of each epoch.
    every_steps: Annotated[int, NON_NEGATIVE] = 200
    # Validation metric that selects best.ckpt: mean ICC(3,1) over AUs (the papers' headline number) or
    # the negated validation loss when no metric is defined.
    best_metric: Literal["icc", "loss"] = "icc"


@dataclass
class LogConfig:
    # Progress line (images/s, loss, ETA) on stderr every N optimiser steps; 0 disables it.
    every_steps: Annotated[int, NON_NEGATIVE] = 20
    # Write TensorBoard event files in the run folder (skipped with a note when tensorboard is missing).
    tensorboard: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


def config_from_dict(data: dict[str, Any]) -> Config:
    """A :class:`Config` from a nested mapping (parsed YAML, a checkpoint's ``config``); strict."""
    config = build_config(Config, data)
    _check_relations(config)
    return config


def _check_relations(config: Config) -> None:
    """The constraints between fields that a per-field :class:`Range` cannot state."""
    data, train = config.data, config.train
    if data.split == "kfold" and data.fold >= data.folds:
        raise ConfigError(
            f"config key 'data.fold' is {data.fold}, but there are only {data.folds} folds "
            f"(data.folds): use 0..{data.folds - 1}"
        )
    if train.batch_size % train.grad_accum:
        raise ConfigError(
            f"train.batch_size {train.batch_size} is not divisible by train.grad_accum {train.grad_accum}"
        )


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (YAML- and torch.save-safe) of a config."""
    return dataclasses.asdict(config)


def apply_overrides(config: Config, overrides: typing.Iterable[str]) -> Config:
    """A new config with ``key=value`` overrides applied (dotted keys, values parsed as YAML scalars).

    ``model.overrides.width=32`` sets one entry of a free-form dict field.
    """
    return config_loader.apply_overrides(config, overrides, config_from_dict)


def training_presets() -> list[str]:
    """The presets of heatmap-model training (``facskit train``, ``crossval``): ``trainer: heatmap``."""
    return config_loader.list_presets(TRAINER)


def load_config(name_or_path: str | Path, overrides: typing.Iterable[str] = ()) -> Config:
    """The config of a preset name (``scc-bp4d``) or a YAML path, with ``key=value`` overrides applied."""
    return apply_overrides(config_loader.read_config(name_or_path, TRAINER, config_from_dict), overrides)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (every key, defaults included), the run folder's record."""
    config_loader.save_config(config, path)
