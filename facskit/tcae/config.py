"""The schema of a TCAE pretraining run: dataclasses, YAML in, typed ``key=value`` overrides.

Same loader as :mod:`facskit.config` (every key and type checked, an unknown key is an error that lists the
valid ones), with TCAE's own sections: there are no labels, AUs or augmentations, but a pair curriculum
and the eq. 7 loss weights. Presets are ``facskit/configs/tcae.yaml`` (paper/reference size) and
``tcae-lite.yaml`` (64x64, trains in minutes on 2 CPU cores).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from facskit.config import (
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    ConfigError,
    OptimConfig,
    Range,
    _build,
    _fields,
    _parse_value,
    read_config_source,
    tcae_presets,
)
from facskit.models.tcae import TCAESpec, tcae_spec
from facskit.tcae.losses import LossWeights
from facskit.tcae.pairs import PairCurriculum

__all__ = [
    "TCAEConfig",
    "load_tcae_config",
    "save_tcae_config",
    "tcae_config_from_dict",
    "tcae_config_to_dict",
]


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
    # Pose field restricted to an N x N grid, bilinearly upsampled (0: dense, as the paper; see TCAESpec).
    pose_field_grid: Annotated[int | None, NON_NEGATIVE] = None
    # How tau combines the two fields: "softmax" (paper eq. 3) or "au_gate" (tau_P + sigmoid(m_A) tau_A;
    # see TCAESpec.field_mix). None keeps the preset's value.
    field_mix: Literal["softmax", "au_gate", "gated"] | None = None
    # "uniform" / "gated": the AU field minus its (gate-weighted) fit by the pose field's grid (needs
    # pose_field_grid > 0; see TCAESpec.au_field_residual). None keeps the preset's value ("none", the paper).
    au_field_residual: Literal["none", "uniform", "gated"] | None = None
    # Pose mask pooled to an N x N grid (0: dense, as the paper; see TCAESpec.pose_mask_grid).
    pose_mask_grid: Annotated[int | None, NON_NEGATIVE] = None
    # D_A also sees the source's pose embedding psi_s (see TCAESpec.au_decoder_sees_pose; False: the paper).
    au_decoder_sees_pose: bool | None = None
    # "field" (the paper), "rigid": the pose field is a rigid 3D motion of a mean face depth surface, or
    # "head": the same for a head placed from psi_t over a background with its own motion (see
    # TCAESpec.pose_decoder; both need field_mix=au_gate).
    pose_decoder: Literal["field", "rigid", "head"] | None = None
    # With pose_decoder "head": the head's support is the ellipse ("ellipse") or a shape learnt in the head's
    # coordinates that can take in the hair ("learned"; see TCAESpec.head_support).
    head_support: Literal["ellipse", "learned"] | None = None
    # With pose_decoder "head": the head's half-axes placed from psi_t ("free") or from psi_s times the head
    # motion's scale ("rigid": the outline cannot follow a jaw drop; see TCAESpec.head_outline).
    head_outline: Literal["free", "rigid"] | None = None
    # With pose_decoder "head": the AU gate times the head's support, so no AU motion off the head (see
    # TCAESpec.au_within_head; False: the gate alone).
    au_within_head: bool | None = None
    # With au_within_head: False detaches the head's support in the AU gate, so the AU term does not move
    # the head's placement (see TCAESpec.au_moves_head; True by default).
    au_moves_head: bool | None = None

    def spec(self) -> TCAESpec:
        overrides = {
            k: v
            for k, v in (
                ("input_size", self.input_size),
                ("filters", self.filters),
                ("embedding_size", self.embedding_size),
                ("branch_layers", self.branch_layers),
                ("pose_field_grid", self.pose_field_grid),
                ("field_mix", self.field_mix),
                ("au_field_residual", self.au_field_residual),
                ("pose_mask_grid", self.pose_mask_grid),
                ("au_decoder_sees_pose", self.au_decoder_sees_pose),
                ("pose_decoder", self.pose_decoder),
                ("head_support", self.head_support),
                ("head_outline", self.head_outline),
                ("au_within_head", self.au_within_head),
                ("au_moves_head", self.au_moves_head),
            )
            if v is not None
        }
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
    # What "most different" means: "frames" (the thumbnails' mean absolute difference) or "landmarks" (the
    # landmark motion left after the best affine fit: the face changing shape rather than the head moving;
    # needs a prepared cache's landmark columns).
    mine_score: Literal["frames", "landmarks"] = "frames"

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
    # Start the pose decoder later than the AU decoder: its fields (tau_P, tau_-P) are multiplied by 0 for
    # the first pose_start_step optimiser steps (exactly zero, no gradient into the pose decoder or the
    # pose branch of the encoder), then by a factor ramping linearly to 1 over pose_ramp_steps (0 and 0:
    # from step 0, as the paper). Why: whichever decoder learns the warps first keeps them, and in the lite
    # runs the pose decoder did, leaving the AU branch unused (benchmarks/results/tcae.md); with the pose
    # branch off, the AU branch has to start carrying the motion. Keep pose_start_step <= twin_start_step:
    # with the twin terms on and tau_P = 0 the pose embedding term pulls psi_s towards psi_t.
    pose_start_step: Annotated[int, NON_NEGATIVE] = 0
    pose_ramp_steps: Annotated[int, NON_NEGATIVE] = 0
    # The same for the AU decoder (tau_A, tau_-A): the pose decoder first, so that the global head motion
    # is taken by the (smooth) pose field before the AU field can start carrying it (0 and 0: from step 0).
    # Keep au_start_step <= twin_start_step too: with the twin terms on and tau_A = 0 the AU-embedding term
    # pulls phi_s towards phi_t.
    au_start_step: Annotated[int, NON_NEGATIVE] = 0
    au_ramp_steps: Annotated[int, NON_NEGATIVE] = 0
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
    # Clip the global gradient norm (0: off); keeps early large warps from blowing up the decoders.
    grad_clip: Annotated[float, NON_NEGATIVE] = 0.0


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
    """A :class:`TCAEConfig` from a nested mapping; strict about keys and types."""
    config = _build(TCAEConfig, data, "")  # every field's type and Range
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


def tcae_config_to_dict(config: TCAEConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def apply_tcae_overrides(config: TCAEConfig, overrides: typing.Iterable[str]) -> TCAEConfig:
    """A new config with dotted ``key=value`` overrides (``train.epochs=3``), values parsed as YAML."""
    data = tcae_config_to_dict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.epochs=3)")
        parts = key.split(".")
        node: Any = data
        cls: Any = TCAEConfig
        for depth, part in enumerate(parts):
            fields = _fields(cls)
            if part not in fields:
                where = ".".join(parts[:depth]) or "the config"
                raise ConfigError(
                    f"unknown config key {'.'.join(parts[: depth + 1])!r}; valid keys in {where}: "
                    f"{', '.join(fields)}"
                )
            is_section = dataclasses.is_dataclass(fields[part])
            if depth == len(parts) - 1:
                if is_section:
                    raise ConfigError(f"config key {key!r} is a section; set one of its keys")
                node[part] = _parse_value(text)
            elif not is_section:
                raise ConfigError(f"config key {'.'.join(parts[: depth + 1])!r} is not a section")
            else:
                node, cls = node[part], fields[part]
    return tcae_config_from_dict(data)


def load_tcae_config(name_or_path: str | Path, overrides: typing.Iterable[str] = ()) -> TCAEConfig:
    """A preset name (one of :func:`facskit.config.tcae_presets`) or a YAML path, with ``key=value``
    overrides applied."""
    config = read_config_source(name_or_path, tcae_presets(), tcae_config_from_dict)
    return apply_tcae_overrides(config, overrides)


def save_tcae_config(config: TCAEConfig, path: str | Path) -> None:
    """Write the resolved config (every key, defaults included) as YAML."""
    Path(path).write_text(yaml.safe_dump(tcae_config_to_dict(config), sort_keys=False))
