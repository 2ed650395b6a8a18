"""The schema of a TCAE pretraining run (``facskit pretrain-tcae``): a dataclass per section.

Read through :mod:`facskit.config_loader` like the training schema (every key, type and range checked, an
unknown key is an error that lists the valid ones), with TCAE's own sections: there are no labels, AUs or
augmentations, but a pair curriculum and the eq. 7 loss weights. Presets are the ``facskit/configs/`` files
with ``trainer: tcae``: ``tcae`` (the paper at the reference's size), ``tcae-lite`` (64x64, trains in
minutes on 2 CPU cores) and ``tcae-lite-track`` (tcae-lite with the settings measured on track crops).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from facskit import config_loader
from facskit.config import OptimConfig
from facskit.config_loader import NON_NEGATIVE, POSITIVE, SEED, ConfigError, Range, build_config
from facskit.models.tcae import REMOVED_OPTIONS, RemovedOptionError, TCAESpec, tcae_spec
from facskit.tcae.losses import LossWeights
from facskit.tcae.pairs import PairCurriculum

__all__ = [
    "TRAINER",
    "TCAEConfig",
    "apply_tcae_overrides",
    "load_tcae_config",
    "save_tcae_config",
    "tcae_config_from_dict",
    "tcae_config_to_dict",
    "tcae_presets",
    "stored_tcae_config",
]

# The ``trainer:`` of this schema's presets (facskit.config_loader.TRAINERS).
TRAINER = "tcae"


@dataclass
class TCAEModelConfig:
    # Preset of facskit.models.tcae.TCAE_PRESETS: "tcae" (256 input, reference sizes) or "tcae-lite" (64).
    preset: Literal["tcae", "tcae-lite"] = "tcae"
    # Replace single fields of the preset (None keeps the preset's value).
    # Bounded so a typo cannot ask for a network of many gigabytes (the presets: 256 / 32 / 256 / 3).
    input_size: Annotated[int | None, Range(ge=16, le=1024)] = None
    filters: Annotated[int | None, Range(ge=1, le=512)] = None
    embedding_size: Annotated[int | None, Range(ge=1, le=4096)] = None
    branch_layers: Annotated[int | None, Range(ge=1, le=10)] = None
    # How tau combines the two fields: "softmax" (eq. 3) or "au_gate" (tau_P + sigmoid(m_A) tau_A; see
    # TCAESpec.field_mix). None keeps the preset's value.
    field_mix: Literal["softmax", "au_gate"] | None = None
    # "field" (the paper) or "head": the pose field is a rigid 3D motion of a head placed from psi_t over a
    # background with its own motion (see TCAESpec.pose_decoder; needs field_mix=au_gate).
    pose_decoder: Literal["field", "head"] | None = None
    # With pose_decoder "head": the AU gate times the head's support, so no AU motion off the head (see
    # TCAESpec.au_within_head; False: the gate alone).
    au_within_head: bool | None = None

    def spec(self) -> TCAESpec:
        """The preset's spec with the fields set here replaced."""
        names = [f.name for f in fields(self) if f.name != "preset"]
        overrides = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        return tcae_spec(self.preset, **overrides)


@dataclass
class TCAEDataConfig:
    # Pairs drawn per epoch from a prepared cache (an epoch is a fresh draw, not a pass over all frames).
    pairs_per_epoch: Annotated[int, POSITIVE] = 20000
    # Resize every cached frame once into memory (S*S*3 bytes each); off for the 256 preset on big caches.
    preload: bool = False
    # Raw videos: run face detection every N frames (landmarks every frame), as `facskit analyze`.
    detect_every: Annotated[int, POSITIVE] = 5
    # Raw videos: expected pairs per tracked face per frame (a value < 1 subsamples long clips).
    pairs_per_frame: Annotated[float, Range(gt=0)] = 1.0
    # Raw videos: "track" crops each face through one matrix per track segment, so the head's motion stays
    # in the crops for the pose branch (as `prepare --crop track`, and as the paper's VoxCeleb face tracks);
    # "aligned" aligns every frame, which removes most of it. A prepared cache is used as it was prepared:
    # a value that contradicts it is refused. None: "track" for raw videos, the cache's own mode otherwise.
    crop: Literal["aligned", "track"] | None = None
    # Raw videos, crop "track": a new segment (and crop) starts where the landmarks drift further than this
    # fraction of the crop size from where the segment's first frame put them (tcae.pairs.SegmentCrop).
    max_drift: Annotated[float, Range(gt=0)] = 0.15


@dataclass
class CurriculumConfig:
    # Frame gaps: pairs are |frame_t - frame_s| in [min_gap, max_gap(epoch)], max_gap ramping linearly
    # from start_max_gap to end_max_gap over ramp_epochs (easy, nearly identical pairs first).
    min_gap: Annotated[int, NON_NEGATIVE] = 1
    start_max_gap: Annotated[int, NON_NEGATIVE] = 4
    end_max_gap: Annotated[int, NON_NEGATIVE] = 60
    ramp_epochs: Annotated[int, NON_NEGATIVE] = 5
    # Self-paced window of the reference: keep the batch's samples ranked [lo, hi) by loss, ramping from
    # start_window to end_window with the gap. The reference went (0, 0.5) -> (0.4, 0.9); [0, 1] keeps all.
    start_window: list[Annotated[float, Range(ge=0, le=1)]] = field(default_factory=lambda: [0.0, 1.0])
    end_window: list[Annotated[float, Range(ge=0, le=1)]] = field(default_factory=lambda: [0.0, 1.0])
    # Pair mining: each pair is the most different (mean |I_s - I_t| of 64 px thumbnails; raw videos: of the
    # crops as the network sees them) of mine_factor candidates drawn as above (1: uniform pairs, as the
    # paper). Without it the AU branch of the lite model never started on faces that move little
    # (benchmarks/results/tcae.md).
    mine_factor: Annotated[int, POSITIVE] = 1

    def curriculum(self) -> PairCurriculum:
        return PairCurriculum(
            min_gap=self.min_gap,
            start_max_gap=self.start_max_gap,
            end_max_gap=self.end_max_gap,
            ramp_epochs=self.ramp_epochs,
            start_window=(float(self.start_window[0]), float(self.start_window[1])),
            end_window=(float(self.end_window[0]), float(self.end_window[1])),
            mine_factor=self.mine_factor,
        )


@dataclass
class TCAELossConfig:
    # lambda_1, lambda_2, lambda_3 of eq. 7 (L_rec has weight 1); defaults: the reference's relative weights.
    sparsity: Annotated[float, NON_NEGATIVE] = 0.01
    cycle: Annotated[float, NON_NEGATIVE] = 0.1
    embedding: Annotated[float, NON_NEGATIVE] = 0.1
    # Weight of the mean AU gate alpha_A (not in the paper; 0 = eq. 7): makes an open AU gate cost something,
    # so the AU field is applied only where it helps (facskit.tcae.losses.LossWeights.gate).
    gate: Annotated[float, NON_NEGATIVE] = 0.0
    # Warm-up of the twin cycles: lambda_2 and lambda_3 are 0 for the first twin_start_step optimiser steps
    # and then ramp linearly to their values over twin_ramp_steps (0 and 0: the full loss from step 0, as
    # the paper). Without it the lite model collapses to zero fields and pair-invariant embeddings
    # (facskit.tcae.losses.twin_ramp).
    twin_start_step: Annotated[int, NON_NEGATIVE] = 0
    twin_ramp_steps: Annotated[int, NON_NEGATIVE] = 0
    # Hold and ramp lambda_1 (the AU field's L1) with the twin terms (false: from step 0, as the paper).
    # With it from step 0 Adam keeps the AU decoder at zero while the pose decoder learns every warp
    # (facskit.tcae.losses.LossWeights.with_twin_scale).
    sparsity_with_twins: bool = False
    # The gate weight (loss.gate) is 0 for the first gate_start_step optimiser steps, then ramps linearly to
    # its value over gate_ramp_steps (0 and 0: from step 0). Why: a gate penalty from the start shut most
    # of the AU field before the AU embedding had formed, and the AU code was lost
    # (benchmarks/results/tcae.md); started late, it only has to confine a field that already exists.
    gate_start_step: Annotated[int, NON_NEGATIVE] = 0
    gate_ramp_steps: Annotated[int, NON_NEGATIVE] = 0

    def weights(self) -> LossWeights:
        return LossWeights(sparsity=self.sparsity, cycle=self.cycle, embedding=self.embedding, gate=self.gate)


@dataclass
class TCAETrainConfig:
    epochs: Annotated[int, POSITIVE] = 20
    # Global batch of pairs per optimiser step, summed over DDP ranks (must divide by the world size).
    batch_size: Annotated[int, POSITIVE] = 64
    # torch intra-op threads (None: torch's default, one per core).
    threads: Annotated[int | None, POSITIVE] = None
    # Mixed precision on CUDA (bf16 where supported, else fp16 with a gradient scaler); ignored on CPU.
    amp: bool = True
    # Seed of initialisation and of the pairs of each epoch.
    seed: Annotated[int, SEED] = 0
    # "auto" (cuda if available), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # Stop after this many optimiser steps in total (smoke tests); None: all epochs.
    max_steps: Annotated[int | None, POSITIVE] = None


@dataclass
class TCAERunConfig:
    # Also save last.ckpt every N steps inside an epoch (0: only at epoch ends).
    checkpoint_every_steps: Annotated[int, NON_NEGATIVE] = 200
    # Progress line every N steps (0: off).
    log_every_steps: Annotated[int, NON_NEGATIVE] = 20


@dataclass
class TCAEConfig:
    model: TCAEModelConfig = field(default_factory=TCAEModelConfig)
    data: TCAEDataConfig = field(default_factory=TCAEDataConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    loss: TCAELossConfig = field(default_factory=TCAELossConfig)
    # Reference: SGD, lr 1e-3, momentum 0.9.
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(name="sgd", lr=1e-3, weight_decay=0.0, momentum=0.9)
    )
    train: TCAETrainConfig = field(default_factory=TCAETrainConfig)
    run: TCAERunConfig = field(default_factory=TCAERunConfig)


def tcae_config_from_dict(data: dict[str, Any]) -> TCAEConfig:
    """A :class:`TCAEConfig` from a nested mapping; strict about keys, types and ranges."""
    config = build_config(TCAEConfig, data)
    for key in ("start_window", "end_window"):
        window = getattr(config.curriculum, key)
        if len(window) != 2:
            raise ConfigError(f"config key 'curriculum.{key}' must be two numbers [lo, hi], got {window}")
    try:
        config.model.spec()
        config.curriculum.curriculum()
    except (KeyError, ValueError) as error:
        raise ConfigError(str(error).strip("'\"")) from None
    return config


# Config keys of options measured and removed, each with the values at which it changed nothing (the model
# options are TCAESpec's, None meaning "the preset's value").
REMOVED_CONFIG_KEYS: dict[str, tuple[Any, ...]] = {
    **{f"model.{key}": (None, *neutral) for key, neutral in REMOVED_OPTIONS.items()},
    "curriculum.mine_score": ("frames",),
    "loss.pose_start_step": (0,),
    "loss.pose_ramp_steps": (0,),
    "loss.au_start_step": (0,),
    "loss.au_ramp_steps": (0,),
    "train.grad_clip": (0, 0.0),
}


def stored_tcae_config(data: dict[str, Any]) -> TCAEConfig:
    """The config stored in a run's checkpoint. Keys of removed options at their no-op values are dropped, so
    a run written before their removal resumes; any other value is a :class:`ConfigError` naming it."""
    sections = {name: dict(value) if isinstance(value, dict) else value for name, value in data.items()}
    for dotted, neutral in REMOVED_CONFIG_KEYS.items():
        section, key = dotted.split(".")
        values = sections.get(section)
        if isinstance(values, dict) and key in values:
            value = values.pop(key)
            if value not in neutral:
                raise ConfigError(str(RemovedOptionError(dotted, value)))
    return tcae_config_from_dict(sections)


def tcae_config_to_dict(config: TCAEConfig) -> dict[str, Any]:
    return config_loader.config_to_dict(config)


def apply_tcae_overrides(config: TCAEConfig, overrides: typing.Iterable[str]) -> TCAEConfig:
    """A new config with dotted ``key=value`` overrides (``train.epochs=3``), values parsed as YAML."""
    return config_loader.apply_overrides(config, overrides, tcae_config_from_dict)


def tcae_presets() -> list[str]:
    """The presets of TCAE pretraining: ``trainer: tcae``."""
    return config_loader.list_presets(TRAINER)


def load_tcae_config(name_or_path: str | Path, overrides: typing.Iterable[str] = ()) -> TCAEConfig:
    """A preset name (one of :func:`tcae_presets`) or a YAML path, with ``key=value`` overrides applied."""
    config = config_loader.read_config(name_or_path, TRAINER, tcae_config_from_dict)
    return apply_tcae_overrides(config, overrides)


def save_tcae_config(config: TCAEConfig, path: str | Path) -> None:
    """Write the resolved config (every key, defaults included) as YAML."""
    config_loader.save_config(config, path)
