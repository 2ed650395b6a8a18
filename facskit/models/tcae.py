"""Twin-Cycle Autoencoder (TCAE), Li, Zeng, Shan & Chen, "Self-supervised Representation Learning from Videos
for Facial Action Unit Detection", CVPR 2019.

Given a source frame ``I_s`` and a target frame ``I_t`` of the same face, an encoder gives each frame an AU
embedding ``phi`` and a pose embedding ``psi``. Two decoders turn a pair of embeddings into a dense
displacement field plus an attention logit: ``D_A(phi_s, phi_t) -> (tau_A, m_A)`` moves the facial actions,
``D_P(psi_s, psi_t) -> (tau_P, m_P)`` moves the head. The combined field (paper eq. 1-3)

    tau = alpha_A * tau_A + alpha_P * tau_P,   (alpha_A, alpha_P) = softmax(m_A, m_P) per pixel

warps ``I_s`` into ``I_t`` (``TCAESpec.field_mix = "au_gate"`` replaces eq. 3 by ``tau_P + sigmoid(m_A)
tau_A``, see :func:`combine_fields`; ``TCAESpec.pose_decoder = "head"`` makes tau_P a rigid 3D head
motion over a background, see :class:`HeadPoseDecoder`). Because the AU field is pushed to be sparse and each
changed face must re-encode to the right embeddings (the twin cycles), the AU embedding ends up describing
facial actions and the pose embedding head motion; ``phi`` is then used for AU detection with few labels.

Sizes follow the reference implementation (mysee1989/TCAE, read, not copied): 256x256 RGB in [0, 1], a
shared trunk of 4x4 stride-2 convolutions (32, 64, 128, 256, 256 channels, BN, LeakyReLU 0.2) followed by two
branches of three more stride-2 convolutions (256, 256, 256) down to 1x1, so ``phi`` and ``psi`` are 256-d;
each decoder mirrors it with eight (bilinear x2 upsampling, 3x3 conv, BN, ReLU) stages (256, 256, 256, 256,
128, 64, 32, then 3 outputs: dx, dy, mask). :func:`tcae_spec` derives the same layout for any power-of-two
input size, which gives the CPU-sized ``tcae-lite`` preset.

The warping conventions (normalised backward fields, border padding) are :mod:`facskit.models.warping`'s;
the head pose decoder is :mod:`facskit.models.tcae_head`.

The last decoder layer starts near zero, so an untrained TCAE is (almost) the identity warp. Fields pass
through ``tanh`` (|d| <= 1, half the image), as in the reference. The masks are raw logits; the reference
squashed them with ``tanh`` too, which bounds alpha to [0.12, 0.88] so neither branch could ever own a
pixel - we drop that.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facskit.models.tcae_head import HeadPoseDecoder
from facskit.models.warping import warp

__all__ = [
    "FIELD_MIXES",
    "POSE_DECODERS",
    "TCAE",
    "TCAE_PRESETS",
    "RemovedOptionError",
    "TCAEOutput",
    "TCAESpec",
    "combine_fields",
    "create_tcae",
    "tcae_spec",
]


# Ways to combine the AU and pose fields into tau (TCAESpec.field_mix, combine_fields).
FIELD_MIXES = ("softmax", "au_gate")
# What the pose decoder produces (TCAESpec.pose_decoder).
POSE_DECODERS = ("field", "head")
# Spec options measured and removed (benchmarks/results/tcae.md, "Options removed"), each with the values at
# which it changed nothing: a stored spec holding one of these still loads.
REMOVED_OPTIONS: dict[str, tuple[Any, ...]] = {
    "pose_field_grid": (0,),
    "au_field_residual": ("none", False),
    "pose_mask_grid": (0,),
    "au_decoder_sees_pose": (False,),
    "head_support": ("ellipse",),
    "head_outline": ("free",),
    "au_moves_head": (True,),
}
# Values of kept options that were removed: field_mix "gated" (two sigmoid gates), pose_decoder "rigid" (a
# rigid motion of the whole crop, background included).
REMOVED_VALUES: dict[str, tuple[str, ...]] = {"field_mix": ("gated",), "pose_decoder": ("rigid",)}


class RemovedOptionError(ValueError):
    """A stored TCAE spec or config uses an option facskit no longer has; the message names it."""

    def __init__(self, key: str, value: Any) -> None:
        super().__init__(
            f"TCAE option {key}={value!r} was removed from facskit (its measurements are in "
            "benchmarks/results/tcae.md); use a facskit release before its removal for this run"
        )


@dataclass(frozen=True)
class TCAESpec:
    """Frozen architecture of a TCAE; stored in every checkpoint so a run rebuilds without its config.

    The defaults are the paper; ``field_mix``, ``pose_decoder`` and ``au_within_head`` are the departures the
    ``tcae-lite-track`` preset makes, each for the measured reason given beside it
    (``benchmarks/results/tcae.md``).
    """

    input_size: int = 256  # square RGB input in [0, 1]; a power of two (the encoder ends at 1x1)
    filters: int = 32  # channels of the first conv; the trunk doubles them up to 8x (reference: 32)
    embedding_size: int = 256  # dimension of phi and of psi (reference: 256; eq. 7 divides L_emb by it)
    branch_layers: int = 3  # stride-2 convs in each of the AU / pose branches after the shared trunk
    # How the two fields make tau (see combine_fields). "softmax": eq. 3, a per-pixel softmax of the two mask
    # logits. "au_gate": tau = tau_P + sigmoid(m_A) tau_A - the pose field always applies in full and the AU
    # mask only gates the AU field. Why: under eq. 3 a dense alpha_P scales a smooth pose field into any
    # local field, so the pose branch can take the AU motion and the AU branch is never needed.
    field_mix: str = "softmax"
    # "field": D_P decodes a displacement field and a mask like D_A (the paper). "head": D_P decodes a rigid
    # 3D motion of a head placed in the target frame from psi_t, over a background with its own in-plane
    # motion (HeadPoseDecoder). Why: a smooth field cannot express yaw and pitch, which move the face's
    # centre more than its sides (parallax), so that motion went to the AU field and the AU embedding
    # learnt the head's yaw; and on track crops the background stays still while the head moves. Needs
    # field_mix "au_gate" (the head decoder has no pose mask to mix with).
    pose_decoder: str = "field"
    # pose_decoder "head" only. True: the AU gate is multiplied by the head's support, alpha_A = sigmoid(m_A)
    # * support, so the AU field applies on the head and nowhere else. Why: an AU is a motion of the face;
    # with the gate alone, hair and crop borders drew 0.38-0.44 of the gated AU flow on synthetic pairs and
    # about half of it on a real video; with the support, 0.01-0.11 and 3-9% (eight seeds), at the cost of
    # a weaker AU embedding at 10% and 100% labels.
    au_within_head: bool = False

    def __post_init__(self) -> None:
        levels = math.log2(self.input_size)
        if levels != int(levels) or self.input_size < 16:
            raise ValueError(f"TCAE input_size must be a power of two >= 16, got {self.input_size}")
        if not 1 <= self.branch_layers < int(levels):
            raise ValueError(f"branch_layers must be in [1, {int(levels) - 1}], got {self.branch_layers}")
        if self.field_mix not in FIELD_MIXES:
            raise ValueError(f"field_mix must be one of {', '.join(FIELD_MIXES)}, got {self.field_mix!r}")
        if self.pose_decoder not in POSE_DECODERS:
            raise ValueError(
                f"pose_decoder must be one of {', '.join(POSE_DECODERS)}, got {self.pose_decoder!r}"
            )
        if self.pose_decoder == "head" and self.field_mix != "au_gate":
            raise ValueError("pose_decoder='head' needs field_mix='au_gate' (its field applies in full)")
        if self.au_within_head and self.pose_decoder != "head":
            raise ValueError("au_within_head needs pose_decoder='head' (the head bounds the AU gate)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TCAESpec:
        """The spec stored in a checkpoint. A removed option at the value that made it a no-op is dropped,
        so checkpoints written before it was removed still load; any other value is a
        :class:`RemovedOptionError` naming it."""
        data = dict(data)
        for key, neutral in REMOVED_OPTIONS.items():
            if key in data:
                value = data.pop(key)
                if value not in neutral:
                    raise RemovedOptionError(key, value)
        for key, values in REMOVED_VALUES.items():
            if data.get(key) in values:
                raise RemovedOptionError(key, data[key])
        return cls(**data)

    @property
    def levels(self) -> int:
        """Number of stride-2 steps from the input to 1x1 (8 for 256)."""
        return int(math.log2(self.input_size))

    def to_dict(self) -> dict[str, int | str | bool]:
        return asdict(self)


# Named presets: the paper/reference size and a lite size that trains in minutes on 2 CPU cores.
TCAE_PRESETS: dict[str, TCAESpec] = {
    "tcae": TCAESpec(input_size=256, filters=32, embedding_size=256, branch_layers=3),
    "tcae-lite": TCAESpec(input_size=64, filters=16, embedding_size=64, branch_layers=2),
}


def tcae_spec(name: str, **overrides: int | str | bool) -> TCAESpec:
    """The preset ``name`` with fields replaced; an unknown name lists the valid ones."""
    if name not in TCAE_PRESETS:
        raise KeyError(f"unknown TCAE preset {name!r}; choose from: {', '.join(TCAE_PRESETS)}")
    return replace(TCAE_PRESETS[name], **overrides)


def create_tcae(name: str = "tcae", **overrides: int | str | bool) -> TCAE:
    """A randomly initialised TCAE of the named preset."""
    return TCAE(tcae_spec(name, **overrides))


# ---------------------------------------------------------------------------------------------- warping


def combine_fields(
    field_au: torch.Tensor,
    field_pose: torch.Tensor,
    mask_au: torch.Tensor,
    mask_pose: torch.Tensor,
    mix: str = "softmax",
    au_support: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The combined field tau and the two weights it used (``mix``, see :attr:`TCAESpec.field_mix`).

    ``"softmax"`` is paper eq. 3: tau = alpha_A tau_A + alpha_P tau_P, alpha = softmax over the two logits
    per pixel (alpha_A + alpha_P = 1). ``"au_gate"``: tau = tau_P + alpha_A tau_A with alpha_A =
    sigmoid(m_A) and alpha_P = 1; the pose logit is unused. Why the second: with eq. 3 a dense alpha_P can
    scale a smooth pose field into any local field, so the AU branch is never needed; with the gate the
    pose field is applied everywhere as it is, and only the AU field can add local motion.
    ``au_support`` (``"au_gate"`` only): a ``(B, 1, H, W)`` weight in [0, 1] that multiplies the AU gate, the
    head's support for :attr:`TCAESpec.au_within_head`.

    Args:
        field_au, field_pose: ``(B, 2, H, W)`` displacement fields.
        mask_au, mask_pose: ``(B, 1, H, W)`` attention logits.
    Returns:
        ``(tau (B, 2, H, W), alpha_au (B, 1, H, W), alpha_pose (B, 1, H, W))``.
    """
    if au_support is not None and mix != "au_gate":
        raise ValueError(f"an AU support needs the au_gate mix, not {mix!r}")
    if mix == "au_gate":
        alpha_au = torch.sigmoid(mask_au)
        if au_support is not None:
            alpha_au = alpha_au * au_support
        return field_pose + alpha_au * field_au, alpha_au, torch.ones_like(alpha_au)
    if mix != "softmax":
        raise ValueError(f"unknown field mix {mix!r}; choose from: {', '.join(FIELD_MIXES)}")
    alpha = torch.softmax(torch.cat((mask_au, mask_pose), dim=1), dim=1)  # (B, 2, H, W)
    alpha_au, alpha_pose = alpha[:, :1], alpha[:, 1:]  # (B, 1, H, W) each
    return alpha_au * field_au + alpha_pose * field_pose, alpha_au, alpha_pose


# ---------------------------------------------------------------------------------------------- network


def _down(in_channels: int, out_channels: int, norm_act: bool = True) -> nn.Sequential:
    """4x4 stride-2 convolution halving the resolution (+ BN + LeakyReLU 0.2 unless it is a final layer)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, 2, 1)]
    if norm_act:
        layers += [nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


class TCAEEncoder(nn.Module):
    """Shared trunk then an AU branch (phi) and a pose branch (psi), each ending at 1x1 (reference layout)."""

    def __init__(self, spec: TCAESpec) -> None:
        super().__init__()
        trunk_layers = spec.levels - spec.branch_layers
        widest = 8 * spec.filters
        channels = [min(spec.filters * 2**i, widest) for i in range(trunk_layers)]
        self.trunk = nn.Sequential(*[_down(c_in, c_out) for c_in, c_out in pairwise([3, *channels])])
        width = channels[-1]

        def branch() -> nn.Sequential:
            layers = [_down(width, width) for _ in range(spec.branch_layers - 1)]
            return nn.Sequential(*layers, _down(width, spec.embedding_size, norm_act=False))

        self.au_branch = branch()
        self.pose_branch = branch()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image (B, 3, S, S)`` in [0, 1] -> ``(phi (B, E), psi (B, E))``."""
        features = self.trunk(image)  # (B, C, S / 2^trunk, same)
        phi = self.au_branch(features).flatten(1)  # (B, E)
        psi = self.pose_branch(features).flatten(1)  # (B, E)
        return phi, psi


class FieldDecoder(nn.Module):
    """(embedding of source, embedding of target) -> displacement field (tanh) + attention logit."""

    def __init__(self, spec: TCAESpec) -> None:
        super().__init__()
        widest = 8 * spec.filters
        n = spec.levels
        # stage i (of n - 1) has min(f * 2^(n-2-i), 8f) channels: 256, 256, 256, 256, 128, 64, 32 for 256/32
        channels = [min(spec.filters * 2 ** (n - 2 - i), widest) for i in range(n - 1)]
        stages: list[nn.Module] = []
        for c_in, c_out in pairwise([2 * spec.embedding_size, *channels]):
            stages += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c_in, c_out, 3, 1, 1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        stages += [
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(channels[-1], 3, 3, 1, 1),
        ]
        self.net = nn.Sequential(*stages)
        # Start at the identity warp (zero field, alpha = 1/2): the reference's default init gives fields of
        # half the image at step 0, which the curriculum's near-identical first pairs then have to undo.
        # Small, not zero, weights so every layer still gets a gradient from the first step.
        nn.init.normal_(stages[-1].weight, std=1e-3)
        nn.init.zeros_(stages[-1].bias)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, E), (B, E)`` -> ``(field (B, 2, S, S) in [-1, 1], mask logit (B, 1, S, S))``."""
        code = F.relu(torch.cat((source, target), dim=1))[:, :, None, None]  # (B, 2E, 1, 1)
        out = self.net(code)  # (B, 3, S, S)
        return torch.tanh(out[:, :2]), out[:, 2:]


@dataclass
class TCAEOutput:
    """Everything one TCAE step computes; the losses (facskit.tcae.losses) read it, tcae-show draws it.

    Images are ``(B, 3, S, S)``, fields ``(B, 2, S, S)``, masks/alphas ``(B, 1, S, S)``, embeddings
    ``(B, E)``.
    Suffix ``_au`` is the AU branch; ``_pose`` the pose branch; ``*_of_au_changed`` are embeddings of the
    AU-changed face tau_A(I_s) (paper: phi_s^A, psi_s^A), ``*_of_pose_changed`` those of tau_P(I_s).
    """

    phi_source: torch.Tensor
    psi_source: torch.Tensor
    phi_target: torch.Tensor
    psi_target: torch.Tensor
    field_au: torch.Tensor
    field_pose: torch.Tensor
    mask_au: torch.Tensor
    mask_pose: torch.Tensor
    alpha_au: torch.Tensor
    alpha_pose: torch.Tensor
    field: torch.Tensor
    au_changed: torch.Tensor
    pose_changed: torch.Tensor
    reconstruction: torch.Tensor
    phi_of_au_changed: torch.Tensor
    psi_of_au_changed: torch.Tensor
    phi_of_pose_changed: torch.Tensor
    psi_of_pose_changed: torch.Tensor
    field_au_back: torch.Tensor
    field_pose_back: torch.Tensor
    au_cycled: torch.Tensor
    pose_cycled: torch.Tensor


class TCAE(nn.Module):
    """The Twin-Cycle Autoencoder: ``forward(source, target) -> TCAEOutput``; ``embed(x) -> (phi, psi)``."""

    def __init__(self, spec: TCAESpec | None = None) -> None:
        super().__init__()
        self.spec = spec or TCAESpec()
        self.encoder = TCAEEncoder(self.spec)
        self.au_decoder = FieldDecoder(self.spec)
        self.pose_decoder: nn.Module = (
            HeadPoseDecoder(self.spec) if self.spec.pose_decoder == "head" else FieldDecoder(self.spec)
        )

    def embed(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` in [0, 1] -> ``(phi (B, E), psi (B, E))``: the features the probe uses."""
        return self.encoder(image)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> TCAEOutput:
        """One twin-cycle pass on a batch of pairs ``(B, 3, S, S)`` in [0, 1].

        Source and target share one encoder call (and the two changed faces another) so BatchNorm sees
        both, and a DDP step has a single forward per module.
        """
        b = source.shape[0]
        phi, psi = self.encoder(torch.cat((source, target)))  # (2B, E) each
        phi_s, phi_t, psi_s, psi_t = phi[:b], phi[b:], psi[:b], psi[b:]

        # tau_A moves the AUs of I_s to those of I_t, tau_P the head pose
        field_au, mask_au = self.au_decoder(phi_s, phi_t)
        field_pose, mask_pose = self.pose_decoder(psi_s, psi_t)
        au_support = torch.sigmoid(mask_pose) if self.spec.au_within_head else None  # the head's support
        field, alpha_au, alpha_pose = combine_fields(  # eq. 3 (or the AU gate)
            field_au, field_pose, mask_au, mask_pose, self.spec.field_mix, au_support
        )
        au_changed = warp(source, field_au)  # tau_A(I_s)
        pose_changed = warp(source, field_pose)  # tau_P(I_s)
        reconstruction = warp(source, field)  # tau(I_s), compared with I_t in L_rec

        # Twin cycles (paper sec. 3.2): re-encode the changed faces; the inverse field is decoded from the
        # changed face's embedding back to the source's, as in the reference, and applied to the changed
        # face (detached like the reference, so the cycle trains the decoders/encoder, not the image path).
        phi_c, psi_c = self.encoder(torch.cat((au_changed, pose_changed)))  # (2B, E) each
        phi_sa, phi_sp, psi_sa, psi_sp = phi_c[:b], phi_c[b:], psi_c[:b], psi_c[b:]
        field_au_back, _ = self.au_decoder(phi_sa, phi_s)  # tau_-A
        field_pose_back, _ = self.pose_decoder(psi_sp, psi_s)  # tau_-P
        au_cycled = warp(au_changed.detach(), field_au_back)  # tau_-A(tau_A(I_s)) ~ I_s
        pose_cycled = warp(pose_changed.detach(), field_pose_back)  # tau_-P(tau_P(I_s)) ~ I_s

        return TCAEOutput(
            phi_source=phi_s,
            psi_source=psi_s,
            phi_target=phi_t,
            psi_target=psi_t,
            field_au=field_au,
            field_pose=field_pose,
            mask_au=mask_au,
            mask_pose=mask_pose,
            alpha_au=alpha_au,
            alpha_pose=alpha_pose,
            field=field,
            au_changed=au_changed,
            pose_changed=pose_changed,
            reconstruction=reconstruction,
            phi_of_au_changed=phi_sa,
            psi_of_au_changed=psi_sa,
            phi_of_pose_changed=phi_sp,
            psi_of_pose_changed=psi_sp,
            field_au_back=field_au_back,
            field_pose_back=field_pose_back,
            au_cycled=au_cycled,
            pose_cycled=pose_cycled,
        )
