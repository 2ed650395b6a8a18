"""Twin-Cycle Autoencoder (TCAE), Li, Zeng, Shan & Chen, "Self-supervised Representation Learning from Videos
for Facial Action Unit Detection", CVPR 2019.

Given a source frame ``I_s`` and a target frame ``I_t`` of the same face, an encoder gives each frame an AU
embedding ``phi`` and a pose embedding ``psi``. Two decoders turn a pair of embeddings into a dense
displacement field plus an attention logit: ``D_A(phi_s, phi_t) -> (tau_A, m_A)`` moves the facial actions,
``D_P(psi_s, psi_t) -> (tau_P, m_P)`` moves the head. The combined field (paper eq. 1-3)

    tau = alpha_A * tau_A + alpha_P * tau_P,   (alpha_A, alpha_P) = softmax(m_A, m_P) per pixel

warps ``I_s`` into ``I_t`` (``TCAESpec.field_mix = "au_gate"`` replaces eq. 3 by ``tau_P + sigmoid(m_A)
tau_A``, see :func:`combine_fields`; ``TCAESpec.pose_decoder = "rigid"`` or ``"head"`` makes tau_P a
rigid 3D head motion, see :class:`RigidPoseDecoder`). Because the AU field is pushed to be sparse and each
changed face must re-encode to the right embeddings (the twin cycles), the AU embedding ends up describing
facial actions and the pose embedding head motion; ``phi`` is then used for AU detection with few labels.

Sizes follow the reference implementation (mysee1989/TCAE, read, not copied): 256x256 RGB in [0, 1], a
shared trunk of 4x4 stride-2 convolutions (32, 64, 128, 256, 256 channels, BN, LeakyReLU 0.2) followed by two
branches of three more stride-2 convolutions (256, 256, 256) down to 1x1, so ``phi`` and ``psi`` are 256-d;
each decoder mirrors it with eight (bilinear x2 upsampling, 3x3 conv, BN, ReLU) stages (256, 256, 256, 256,
128, 64, 32, then 3 outputs: dx, dy, mask). :func:`tcae_spec` derives the same layout for any power-of-two
input size, which gives the CPU-sized ``tcae-lite`` preset.

Conventions (all warping in this package goes through :func:`warp`):

* A displacement field is ``(B, 2, H, W)`` with channel 0 = x (to the right) and 1 = y (down), in
  *normalised* coordinates of ``torch.nn.functional.grid_sample`` with ``align_corners=True``: -1 and +1 are
  the centres of the first and last pixels, so a displacement ``d`` is ``d * (W - 1) / 2`` pixels. This is the
  reference's ``linspace(-1, 1, W)`` base grid. The output pixel ``p`` *samples* the source at ``p + tau(p)``
  (backward warping), so a zero field is exactly the identity.
* Samples outside the image take the border value (``padding_mode="border"``), which equals the reference's
  clamping of the sampling grid to [-1, 1] but without a hand-written clamp.
* The last decoder layer starts near zero, so an untrained TCAE is (almost) the identity warp.
* Fields pass through ``tanh`` (|d| <= 1, half the image), as in the reference. The masks are raw logits;
  the reference squashed them with ``tanh`` too, which bounds alpha to [0.12, 0.88] so neither branch could
  ever own a pixel - we drop that.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TCAE",
    "FIELD_MIXES",
    "RigidPoseDecoder",
    "TCAE_PRESETS",
    "TCAEOutput",
    "TCAESpec",
    "combine_fields",
    "remove_grid_fit",
    "create_tcae",
    "identity_grid",
    "mean_face_depth",
    "tcae_spec",
    "warp",
]


# Ways to combine the AU and pose fields into tau (TCAESpec.field_mix, combine_fields).
FIELD_MIXES = ("softmax", "au_gate", "gated")
# What is subtracted from the AU field (TCAESpec.au_field_residual).
AU_FIELD_RESIDUALS = ("none", "uniform", "gated")
# What the pose decoder produces (TCAESpec.pose_decoder).
POSE_DECODERS = ("field", "rigid", "head")
# The head's support for pose_decoder "head" (TCAESpec.head_support).
HEAD_SUPPORTS = ("ellipse", "learned")
HEAD_OUTLINES = ("free", "rigid")


@dataclass(frozen=True)
class TCAESpec:
    """Frozen architecture of a TCAE; stored in every checkpoint so a run rebuilds without its config."""

    input_size: int = 256  # square RGB input in [0, 1]; a power of two (the encoder ends at 1x1)
    filters: int = 32  # channels of the first conv; the trunk doubles them up to 8x (reference: 32)
    embedding_size: int = 256  # dimension of phi and of psi (reference: 256; eq. 7 divides L_emb by it)
    branch_layers: int = 3  # stride-2 convs in each of the AU / pose branches after the shared trunk
    # 0: the pose decoder's field is dense, as the paper. N > 0: it is average-pooled to N x N and bilinearly
    # upsampled back (align_corners=True), so head motion is smooth/global and local (AU) motion has to go
    # through the AU field. The attention masks stay at full resolution.
    pose_field_grid: int = 0
    # How the two fields make tau (see combine_fields). "softmax": the paper's eq. 3, a per-pixel softmax of
    # the two mask logits. "au_gate": tau = tau_P + sigmoid(m_A) tau_A - the pose field always applies in
    # full and the AU mask only gates the AU field, so the pose *mask* cannot carve local motion out of the
    # pose field (the loophole measured with pose_field_grid, benchmarks/results/tcae.md).
    field_mix: str = "softmax"
    # "none": the AU field is the decoder's output, as the paper. Otherwise (needs pose_field_grid > 0) the
    # AU field keeps only what the pose field cannot express: its least-squares fit by the pose field's
    # N x N bilinear grid is subtracted, over all pixels ("uniform") or weighted by the AU gate sigmoid(m_A)
    # ("gated", for the au_gate / gated mixes). Why: with head motion in the videos the AU branch also
    # learned the head's motion (AU-embedding yaw R^2 0.76-0.82, benchmarks/results/tcae.md). "uniform" is
    # not enough where the background stays still (track crops): a face-wide shift with the opposite shift
    # in the background has no whole-image fit, and the closed gate hides the background part; "gated"
    # leaves no affine motion where the AU field is applied. (True / False in older checkpoints.)
    au_field_residual: str = "none"
    # 0: the pose mask is dense. N > 0: it is pooled to N x N and bilinearly upsampled, so (with
    # field_mix="gated") it can confine the pose field to the head but cannot carve out a facial feature.
    pose_mask_grid: int = 0
    # False: D_A(phi_s, phi_t), as the paper. True: D_A(phi_s, phi_t, psi_s) - the AU decoder also sees the
    # source's pose embedding. Why: on crops where the face moves (prepare --crop track) D_A has to put its
    # field where the mouth and brows are, and with only phi to go by, phi had to say where the face is
    # (AU-embedding within-subject pose R^2 0.52-0.56, benchmarks/results/tcae.md). psi_s tells it instead.
    # Only the source's psi: with psi_t too, D_A could decode the head's motion itself. Measured no better
    # (the pose in phi is mostly yaw, which pose_decoder="rigid" addresses).
    au_decoder_sees_pose: bool = False
    # "field": D_P decodes a displacement field and a mask like D_A, as the paper. "rigid": D_P decodes the
    # six parameters of a rigid 3D head motion (three rotations, an image-plane shift, a scale), and the
    # pose field is that motion of a mean face's depth surface seen orthographically (RigidPoseDecoder).
    # Why: a grid-restricted pose field cannot express yaw and pitch, which move the face's centre more
    # than its sides (parallax), so that motion went to the AU field and the AU embedding learnt the
    # head's yaw (benchmarks/results/tcae.md). A rigid motion can express it, and nothing local. Needs
    # field_mix "au_gate" (there is no pose mask) and no pose grid or AU-field residual. "head": the same
    # rigid motion for a head placed in the target frame from psi_t, in front of a background with its own
    # in-plane motion (RigidPoseDecoder, head=True): on track crops the "rigid" field moved the still
    # background too, and the AU field held it still (57% of the gated AU flow outside the face).
    pose_decoder: str = "field"
    # pose_decoder "head" only. "ellipse": the head's support is the soft ellipse its depth surface sits on.
    # "learned": the support is a shape learnt in the head's own coordinates (a 16 x 16 map over twice the
    # ellipse, starting as the ellipse and placed with it; the depth surface stays the ellipse's). Why: the
    # ellipse covers the face, not the hair, which moves with the head, and hair and crop borders drew
    # 0.38-0.40 of the gated AU flow. One shape for every face, not one per frame: a per-frame shape could
    # switch a jaw between head and background motion, a local change the AU field is there for. Measured
    # (benchmarks/results/tcae.md, tenth session): the shape grew only softly past the ellipse (support
    # 0.19-0.24 out to 1.4 half-axes, from 0.01) and softened inside (median 0.88-0.94); the AU embedding
    # carried less head pose in five seeds of six, and as much of the AU flow stayed outside the face.
    head_support: str = "ellipse"
    # pose_decoder "head" only. "free": psi_t places the head's ellipse in the target frame, centre and
    # half-axes. "rigid": psi_t gives the centre, but the half-axes are the source's (placed from psi_s)
    # times the head motion's own scale - a rigid head cannot change shape between two frames, so nothing
    # about the target's face but where it is goes through its placement. Why: in the seeds whose pose
    # embedding detected AUs as well as the AU embedding, a placement that could not stretch at all kept
    # the AU code out of psi but left the head unable to fit each face's outline (tenth session); sizes
    # from the source still fit each face. Measured (benchmarks/results/tcae.md, eleventh session): no
    # better - the three criteria in 3 seeds of 6 (4 of 6 with "free"), and the placement carried little AU
    # information with either (within-subject R^2 from the AU intensities 0.02-0.13): not where psi takes
    # it in.
    head_outline: str = "free"
    # pose_decoder "head" only. False: the AU gate alone decides where the AU field applies. True: the AU
    # gate is multiplied by the head's support, alpha_A = sigmoid(m_A) * support, so the AU field applies
    # on the head that the pose branch places and nowhere else. Why: an AU is a motion of the face; with the
    # gate alone, hair and crop borders (which move with the head but outside its ellipse) drew 0.38-0.44
    # of the gated AU flow on synthetic pairs, and on a real video, a face unlike the training faces, about
    # half of it. Measured (benchmarks/results/tcae.md, thirteenth session, eight seeds): 0.01-0.11 outside
    # the face on synthetic pairs and 3-9% on the video, 0.62-0.88 and 74-91% on the mobile parts; the AU
    # embedding weaker at 10% and 100% labels than with the gate alone.
    au_within_head: bool = False
    # au_within_head only. True: the AU term's gradient reaches the head's placement through the support.
    # False: the support is detached in the AU gate, so only the reconstruction through the pose field and
    # the pose terms place the head, and psi_t has no reason to learn where the AU motion is. Measured
    # (benchmarks/results/tcae.md, thirteenth session, seeds 0-5): the three criteria in 5 of 6 either way,
    # the AU embedding stronger on average with False (0.103 / 0.141 / 0.140 against 0.096 / 0.123 / 0.131).
    au_moves_head: bool = True

    def __post_init__(self) -> None:
        levels = math.log2(self.input_size)
        if levels != int(levels) or self.input_size < 16:
            raise ValueError(f"TCAE input_size must be a power of two >= 16, got {self.input_size}")
        if not 1 <= self.branch_layers < int(levels):
            raise ValueError(f"branch_layers must be in [1, {int(levels) - 1}], got {self.branch_layers}")
        if self.pose_field_grid != 0 and not 2 <= self.pose_field_grid <= self.input_size:
            raise ValueError(
                f"pose_field_grid must be 0 (dense) or in [2, {self.input_size}], got {self.pose_field_grid}"
            )
        if self.field_mix not in FIELD_MIXES:
            raise ValueError(f"field_mix must be one of {', '.join(FIELD_MIXES)}, got {self.field_mix!r}")
        if isinstance(self.au_field_residual, bool):  # checkpoints written before it had three values
            object.__setattr__(self, "au_field_residual", "uniform" if self.au_field_residual else "none")
        if self.au_field_residual not in AU_FIELD_RESIDUALS:
            raise ValueError(
                f"au_field_residual must be one of {', '.join(AU_FIELD_RESIDUALS)}, "
                f"got {self.au_field_residual!r}"
            )
        if self.au_field_residual != "none" and self.pose_field_grid == 0:
            raise ValueError(
                "au_field_residual needs a coarse pose field (pose_field_grid > 0): against the dense pose "
                "field of the paper nothing would be left of the AU field"
            )
        if self.au_field_residual == "gated" and self.field_mix == "softmax":
            raise ValueError(
                "au_field_residual='gated' needs field_mix 'au_gate' or 'gated' (a sigmoid AU gate)"
            )
        if self.pose_mask_grid != 0 and not 2 <= self.pose_mask_grid <= self.input_size:
            raise ValueError(
                f"pose_mask_grid must be 0 (dense) or in [2, {self.input_size}], got {self.pose_mask_grid}"
            )
        if self.pose_decoder not in POSE_DECODERS:
            raise ValueError(
                f"pose_decoder must be one of {', '.join(POSE_DECODERS)}, got {self.pose_decoder!r}"
            )
        if self.pose_decoder in ("rigid", "head") and (
            self.field_mix != "au_gate"
            or self.pose_field_grid
            or self.pose_mask_grid
            or self.au_field_residual != "none"
        ):
            raise ValueError(
                f"pose_decoder={self.pose_decoder!r} needs field_mix='au_gate' (its field applies in full) "
                "and no pose_field_grid, "
                "pose_mask_grid or au_field_residual (its field is already smooth)"
            )
        if self.head_support not in HEAD_SUPPORTS:
            raise ValueError(
                f"head_support must be one of {', '.join(HEAD_SUPPORTS)}, got {self.head_support!r}"
            )
        if self.head_support != "ellipse" and self.pose_decoder != "head":
            raise ValueError(f"head_support={self.head_support!r} needs pose_decoder='head'")
        if self.head_outline not in HEAD_OUTLINES:
            raise ValueError(
                f"head_outline must be one of {', '.join(HEAD_OUTLINES)}, got {self.head_outline!r}"
            )
        if self.head_outline != "free" and self.pose_decoder != "head":
            raise ValueError(f"head_outline={self.head_outline!r} needs pose_decoder='head'")
        if self.au_within_head and self.pose_decoder != "head":
            raise ValueError("au_within_head needs pose_decoder='head' (the head bounds the AU gate)")
        if not self.au_moves_head and not self.au_within_head:
            raise ValueError("au_moves_head=False needs au_within_head=True (it detaches the head's support)")

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


def identity_grid(height: int, width: int, device: torch.device | None = None, dtype=None) -> torch.Tensor:
    """The sampling grid of the identity warp, ``(1, H, W, 2)`` (x, y) in [-1, 1] (align_corners=True)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack((grid_x, grid_y), dim=-1).unsqueeze(0)  # (1, H, W, 2)


def warp(image: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``image (B, C, H, W)`` by ``field (B, 2, h, w)``: out(p) = image(p + field(p)).

    The field is in normalised coordinates (see the module docstring); when its size differs from the
    image's, the output has the field's size (the grid is resampled, not the image).
    """
    _, _, h, w = field.shape
    grid = identity_grid(h, w, field.device, field.dtype) + field.permute(0, 2, 3, 1)  # (B, h, w, 2)
    return F.grid_sample(
        image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True
    )


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
    pose field is applied everywhere as it is, and only the AU field can add local motion. ``"gated"``:
    tau = sigmoid(m_P) tau_P + sigmoid(m_A) tau_A, two independent gates, so the pose field can move the
    head without moving a still background (meant with a coarse pose mask, ``pose_mask_grid``).
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
    if mix == "gated":
        alpha_au, alpha_pose = torch.sigmoid(mask_au), torch.sigmoid(mask_pose)
        return alpha_pose * field_pose + alpha_au * field_au, alpha_au, alpha_pose
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
    """(embedding of source, embedding of target) -> displacement field (tanh) + attention logit.

    ``field_grid`` > 0 restricts the field to a bilinear interpolation of ``field_grid x field_grid`` values
    (the full-resolution output average-pooled to that grid, then upsampled); the mask is not restricted.
    ``residual_of_grid`` > 0 does the opposite: the field's least-squares fit by such a grid is subtracted,
    leaving the part no ``residual_of_grid``-grid field can express (:attr:`TCAESpec.au_field_residual`);
    with ``residual_weighted`` the fit is weighted by the field's own gate, sigmoid(mask logit).
    ``mask_grid`` > 0 makes the mask logit coarse the way ``field_grid`` makes the field coarse.
    ``inputs`` is how many embeddings it is given (2: source and target; 3: a condition too, see
    :attr:`TCAESpec.au_decoder_sees_pose`).
    """

    def __init__(
        self,
        spec: TCAESpec,
        field_grid: int = 0,
        residual_of_grid: int = 0,
        residual_weighted: bool = False,
        mask_grid: int = 0,
        inputs: int = 2,
    ) -> None:
        super().__init__()
        self.field_grid = field_grid
        self.residual_of_grid = residual_of_grid
        self.residual_weighted = residual_weighted
        self.mask_grid = mask_grid
        if residual_of_grid:
            # Orthonormal basis (S*S, N*N) of the fields a bilinear N x N grid gives; derived from the spec,
            # so not saved in checkpoints.
            self.register_buffer(
                "grid_basis", _bilinear_grid_basis(residual_of_grid, spec.input_size), persistent=False
            )
        widest = 8 * spec.filters
        n = spec.levels
        # stage i (of n - 1) has min(f * 2^(n-2-i), 8f) channels: 256, 256, 256, 256, 128, 64, 32 for 256/32
        channels = [min(spec.filters * 2 ** (n - 2 - i), widest) for i in range(n - 1)]
        stages: list[nn.Module] = []
        self.inputs = inputs
        for c_in, c_out in pairwise([inputs * spec.embedding_size, *channels]):
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

    def forward(self, *embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs`` embeddings ``(B, E)`` (source, target[, condition]) -> ``(field (B, 2, S, S) in
        [-1, 1], mask logit (B, 1, S, S))``."""
        if len(embeddings) != self.inputs:
            raise ValueError(f"this decoder takes {self.inputs} embeddings, got {len(embeddings)}")
        code = F.relu(torch.cat(embeddings, dim=1))[:, :, None, None]  # (B, inputs * E, 1, 1)
        out = self.net(code)  # (B, 3, S, S)
        field = torch.tanh(out[:, :2])  # (B, 2, S, S)
        mask = out[:, 2:]
        if self.field_grid:
            field = _coarse(field, self.field_grid)
        if self.mask_grid:
            mask = _coarse(mask, self.mask_grid)
        if self.residual_of_grid:
            weights = torch.sigmoid(mask.detach()) if self.residual_weighted else None
            field = remove_grid_fit(field, self.grid_basis, weights)
        return field, mask


class RigidPoseDecoder(nn.Module):
    """(psi_s, psi_t) -> the backward field of a rigid 3D head motion, and a mask logit.

    An MLP gives six numbers: rotations about x, y, z (radians, at most 0.6), an image-plane shift (at
    most 0.5 of the half-image) and a log scale (at most 0.3). Each target pixel p = (x, y) in normalised
    coordinates is lifted to (x, y, z(p)) on a head-shaped depth surface, moved back by the inverse motion,
    P_s = R^T (P_t - t) / s, and projected orthographically: tau(p) = P_s[:2] - p. Depth is read at the
    target pixel, a first-order approximation that is exact for in-plane motion. The last layers start
    near zero, so the field starts at the identity, like :class:`FieldDecoder`.

    ``head=False`` (``pose_decoder="rigid"``): the depth surface is :func:`mean_face_depth`, fixed at the
    crop's mean face, and every pixel - background included - moves with the head; the mask logit is 0.

    ``head=True`` (``pose_decoder="head"``): a rigid head in front of a background that moves on its own.
    A second MLP places the head in the *target* frame from psi_t alone: the mean face's ellipse shifted
    (at most 0.3 of the half-image) and stretched (log-scale at most 0.3 per axis); the depth surface is
    the half-ellipsoid over it, and the head's support is a soft ellipse, sigmoid((1 - r^2) / 0.1). Outside
    it the field is the background's own in-plane similarity (four more numbers from the motion MLP, zero
    at the start: a still background). The mask logit returned is the support's, for inspection (the
    au_gate mix applies the pose field in full). Why: on track crops the background stays still while the
    head moves, and a rigid field that moves every pixel left the AU field to hold the background still -
    the gated AU flow of a "rigid" run lay 57% outside the face, where optical flow has 33%
    (facskit.tcae.regions, benchmarks/results/tcae.md). And in a track crop the face is up to a tenth of
    the crop away from the mean face, so a fixed depth surface put the parallax in the wrong place.

    ``learned_support`` (``head_support="learned"``, with ``head``): the support's logit is read from a map
    learnt in the head's own coordinates ((x - cx) / a, (y - cy) / b), 16 x 16 over [-2, 2]^2, that starts
    as the ellipse's 1 - r^2; it is placed with the ellipse, so it can take in the hair but cannot change
    from frame to frame.

    ``rigid_outline`` (``head_outline="rigid"``, with ``head``): only the ellipse's centre is placed from
    psi_t; its half-axes are those placed from psi_s, times the motion's scale s (P_t = s R P_s + t), so the
    head's outline changes between the frames of a pair by a zoom and nothing else.
    """

    MAX_ANGLE, MAX_SHIFT, MAX_LOG_SCALE = 0.6, 0.5, 0.3
    MAX_PLACE_SHIFT, MAX_PLACE_LOG_SCALE, SUPPORT_SOFTNESS, DEPTH_RATIO = 0.3, 0.3, 0.1, 0.8
    SHAPE_GRID, SHAPE_EXTENT = 16, 2.0  # the learnt support's map: cells, and its reach in half-axes

    def __init__(
        self,
        spec: TCAESpec,
        hidden: int = 128,
        head: bool = False,
        learned_support: bool = False,
        rigid_outline: bool = False,
    ) -> None:
        super().__init__()
        if (learned_support or rigid_outline) and not head:
            raise ValueError("a learned support or rigid outline needs head=True (a head over a background)")
        self.size, self.head, self.rigid_outline = spec.input_size, head, rigid_outline
        outputs = 10 if head else 6  # head: + the background's rotation about z, shift x, y, log scale
        self.net = nn.Sequential(
            nn.Linear(2 * spec.embedding_size, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, outputs)
        )
        nn.init.normal_(self.net[-1].weight, std=1e-3)
        nn.init.zeros_(self.net[-1].bias)
        grid = identity_grid(spec.input_size, spec.input_size)[0]  # (S, S, 2): x, y
        if head:
            self.place = nn.Sequential(
                nn.Linear(spec.embedding_size, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4)
            )
            nn.init.normal_(self.place[-1].weight, std=1e-3)
            nn.init.zeros_(self.place[-1].bias)
            self.register_buffer("ellipse", torch.tensor(mean_face_ellipse()), persistent=False)
            points = torch.cat((grid, torch.zeros_like(grid[..., :1])), dim=-1)  # depth filled per head
        else:
            points = torch.cat((grid, mean_face_depth(spec.input_size)[..., None]), dim=-1)
        self.register_buffer("points", points, persistent=False)
        self.head_shape: nn.Parameter | None = None
        if learned_support:
            axis = torch.linspace(-self.SHAPE_EXTENT, self.SHAPE_EXTENT, self.SHAPE_GRID)
            v, u = torch.meshgrid(axis, axis, indexing="ij")
            self.head_shape = nn.Parameter((1.0 - u**2 - v**2)[None, None])  # (1, 1, G, G): the ellipse

    def motion(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(B, 6)`` (``(B, 10)`` with ``head``): rotations about x, y, z, shift x, y, log scale [, the
        background's rotation about z, shift x, y, log scale] (bounded by tanh)."""
        raw = torch.tanh(self.net(F.relu(torch.cat((source, target), dim=1))))
        bounds = [self.MAX_ANGLE] * 3 + [self.MAX_SHIFT] * 2 + [self.MAX_LOG_SCALE]
        if self.head:
            bounds += [self.MAX_ANGLE, self.MAX_SHIFT, self.MAX_SHIFT, self.MAX_LOG_SCALE]
        return raw * raw.new_tensor(bounds)

    def placement(self, target: torch.Tensor) -> torch.Tensor:
        """``(B, 4)``: the head's ellipse in the target frame, centre x, y and half-axes a, b (normalised)."""
        raw = torch.tanh(self.place(F.relu(target)))
        cx, cy, a, b = self.ellipse.to(raw.dtype)
        shift = raw[:, :2] * self.MAX_PLACE_SHIFT
        stretch = torch.exp(raw[:, 2:] * self.MAX_PLACE_LOG_SCALE)
        return torch.stack((cx + shift[:, 0], cy + shift[:, 1], a * stretch[:, 0], b * stretch[:, 1]), dim=1)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, E), (B, E)`` -> ``(field (B, 2, S, S), mask logit (B, 1, S, S))``."""
        motion = self.motion(source, target)
        if not self.head:
            return self.field(motion), source.new_zeros(len(source), 1, self.size, self.size)
        placement = self.placement(target)  # (B, 4)
        if self.rigid_outline:  # the source's half-axes, zoomed by the motion's scale
            axes = self.placement(source)[:, 2:] * torch.exp(motion[:, 5:6])
            placement = torch.cat((placement[:, :2], axes), dim=1)
        coords = self.head_coordinates(placement)  # (B, S*S, 2)
        inside = 1.0 - (coords**2).sum(dim=-1)  # (B, S*S): 1 - r^2, > 0 inside the ellipse
        # the half-ellipsoid's height, depth ratio x half-width; + 1e-6 keeps sqrt's gradient finite at 0
        depth = self.DEPTH_RATIO * placement[:, 2:3] * torch.sqrt(inside.clamp(min=0) + 1e-6)
        points = self.points.flatten(0, 1).to(motion.dtype).expand(len(motion), -1, -1).clone()
        points[..., 2] = depth
        head = self.field(motion[:, :6], points)
        background_motion = F.pad(motion[:, 6:], (2, 0))  # rotation about z only, no depth
        background = self.field(background_motion)  # self.points has z = 0
        shape = inside.view(len(motion), 1, self.size, self.size)
        if self.head_shape is not None:  # the learnt shape, read where each pixel is in head coordinates
            where = (coords / self.SHAPE_EXTENT).view(len(motion), self.size, self.size, 2)
            shape = F.grid_sample(
                self.head_shape.to(where.dtype).expand(len(motion), -1, -1, -1),
                where,
                mode="bilinear",
                padding_mode="border",
                align_corners=True,
            )
        logit = shape / self.SUPPORT_SOFTNESS
        support = torch.sigmoid(logit)
        return support * head + (1 - support) * background, logit

    def head_coordinates(self, placement: torch.Tensor) -> torch.Tensor:
        """``(B, S*S, 2)``: each pixel in the coordinates of the ellipses ``placement (B, 4)``,
        ((x - cx) / a, (y - cy) / b); the ellipse is where they have norm < 1."""
        xy = self.points.flatten(0, 1)[:, :2].to(placement.dtype)  # (S*S, 2)
        return (xy[None] - placement[:, None, :2]) / placement[:, None, 2:]

    def field(self, motion: torch.Tensor, points: torch.Tensor | None = None) -> torch.Tensor:
        """The backward field ``(B, 2, S, S)`` of ``motion (B, 6)`` (see the class docstring) on
        ``points`` ``(S*S, 3)`` or ``(B, S*S, 3)`` (default: the decoder's own)."""
        rotation = _rotation(motion[:, 0], motion[:, 1], motion[:, 2])  # (B, 3, 3)
        shift = F.pad(motion[:, 3:5], (0, 1))  # (B, 3): no shift in depth
        scale = torch.exp(motion[:, 5])[:, None, None]  # (B, 1, 1)
        if points is None:
            points = self.points.flatten(0, 1).to(motion.dtype)
        if points.dim() == 2:
            points = points[None]
        # row vectors: P_s = (P_t - t) R / s is R^T (P_t - t) / s for column vectors
        moved = ((points - shift[:, None]) @ rotation) / scale  # (B, S*S, 3)
        field = moved[..., :2] - points[..., :2]  # (B, S*S, 2)
        return field.transpose(1, 2).reshape(len(motion), 2, self.size, self.size)


def _rotation(about_x: torch.Tensor, about_y: torch.Tensor, about_z: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` rotation R = R_z R_y R_x (x right, y down, z towards the camera)."""
    cx, sx, cy, sy, cz, sz = (f(a) for a in (about_x, about_y, about_z) for f in (torch.cos, torch.sin))
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    r_x = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], dim=-1).view(-1, 3, 3)
    r_y = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], dim=-1).view(-1, 3, 3)
    r_z = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], dim=-1).view(-1, 3, 3)
    return r_z @ r_y @ r_x


def mean_face_ellipse() -> tuple[float, float, float, float]:
    """``(cx, cy, a, b)``, normalised: the ellipse of a head over the mean face of the BMVC'18 crop
    (:data:`facskit.align.MEAN_FACE_256`: jaw line 47-209 px across, brows at 55 and chin at 228 of 256),
    with the forehead a third of the brow-to-chin height above the brows."""
    from facskit.align import MEAN_FACE_256

    face = np.asarray(MEAN_FACE_256, dtype=np.float64) / 255.0 * 2.0 - 1.0  # crop pixels -> [-1, 1]
    left, right = face[0:17, 0].min(), face[0:17, 0].max()
    brows, chin = face[17:27, 1].min(), face[8, 1]
    top = brows - (chin - brows) / 3.0
    return (left + right) / 2.0, (top + chin) / 2.0, (right - left) / 2.0, (chin - top) / 2.0


def mean_face_depth(size: int) -> torch.Tensor:
    """``(S, S)`` depth towards the camera, normalised like the fields: the half-ellipsoid over
    :func:`mean_face_ellipse`, depth 0.8 of the half-width; 0 outside the face. A head is closer to an
    ellipsoid than to the plane that affine and grid fields assume; that is the difference between yaw and
    a horizontal shift.
    """
    cx, cy, a, b = mean_face_ellipse()
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    inside = (1.0 - ((xs - cx) / a) ** 2 - ((ys - cy) / b) ** 2).clamp(min=0.0)
    return (0.8 * a * torch.sqrt(inside)).float()


def _coarse(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``x (B, C, S, S)`` average-pooled to ``grid x grid`` and bilinearly upsampled back (align_corners)."""
    return F.interpolate(
        F.adaptive_avg_pool2d(x, grid), size=x.shape[-2:], mode="bilinear", align_corners=True
    )


def remove_grid_fit(
    field: torch.Tensor, basis: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``field (B, 2, S, S)`` minus its least-squares fit by the fields spanned by ``basis`` (S*S, K),
    orthonormal; with ``weights (B, 1, S, S)`` the fit is weighted per pixel (a K x K solve per image)."""
    flat = field.flatten(2).float()  # (B, 2, S*S)
    if weights is None:
        fit = (flat @ basis) @ basis.T  # orthogonal projection onto the grid fields
    else:
        w = weights.flatten(2).float()  # (B, 1, S*S)
        gram = (basis.T * w) @ basis  # (B, K, K): B^T W B
        rhs = (flat * w) @ basis  # (B, 2, K): B^T W f per channel
        eye = torch.eye(basis.shape[1], device=basis.device, dtype=basis.dtype)
        coefficients = torch.linalg.solve(gram + 1e-6 * eye, rhs.transpose(1, 2))  # (B, K, 2)
        fit = (basis @ coefficients).transpose(1, 2)  # (B, 2, S*S)
    return (flat - fit).to(field.dtype).view_as(field)


def _bilinear_grid_basis(grid: int, size: int) -> torch.Tensor:
    """Orthonormal basis ``(size*size, grid*grid)`` of the fields that are bilinear interpolations
    (align_corners=True) of ``grid x grid`` values - the span of :class:`FieldDecoder`'s coarse fields."""
    nodes = torch.eye(grid * grid, dtype=torch.float64).view(grid * grid, 1, grid, grid)
    hats = F.interpolate(nodes, size=(size, size), mode="bilinear", align_corners=True)  # (N*N, 1, S, S)
    basis, _ = torch.linalg.qr(hats.flatten(1).T)  # (S*S, N*N)
    return basis.float()


def _scaled(field: torch.Tensor, mask: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One branch's (field, mask logit) with the field times ``scale`` (:meth:`TCAE.forward`). At 0 the
    field is exact zeros with zero gradients, and the logit keeps its value but passes no gradient into
    the switched-off decoder."""
    if scale == 1.0:
        return field, mask
    if scale == 0.0:
        mask = mask.detach() + 0.0 * mask
    return scale * field, mask


@dataclass
class TCAEOutput:
    """Everything one TCAE step computes; the losses (facskit.tcae.losses) read it, tcae-show draws it.

    Images are ``(B, 3, S, S)``, fields ``(B, 2, S, S)``, masks/alphas ``(B, 1, S, S)``, embeddings
    ``(B, E)``.
    Suffix ``_au`` is the AU branch; ``_pose`` the pose branch; ``*_of_au_changed`` are embeddings of the
    AU-changed face tau_A(I_s) (paper: phi_s^A, psi_s^A), ``*_of_pose_changed`` those of tau_P(I_s).
    ``field_pose`` and ``field_pose_back`` are the pose fields as used, i.e. times ``pose_scale`` of
    :meth:`TCAE.forward`.
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
        residual = self.spec.au_field_residual
        self.au_decoder = FieldDecoder(
            self.spec,
            residual_of_grid=self.spec.pose_field_grid if residual != "none" else 0,
            residual_weighted=residual == "gated",
            inputs=3 if self.spec.au_decoder_sees_pose else 2,
        )
        self.pose_decoder: nn.Module
        if self.spec.pose_decoder in ("rigid", "head"):
            self.pose_decoder = RigidPoseDecoder(
                self.spec,
                head=self.spec.pose_decoder == "head",
                learned_support=self.spec.head_support == "learned",
                rigid_outline=self.spec.head_outline == "rigid",
            )
        else:
            self.pose_decoder = FieldDecoder(
                self.spec, field_grid=self.spec.pose_field_grid, mask_grid=self.spec.pose_mask_grid
            )

    def embed(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` in [0, 1] -> ``(phi (B, E), psi (B, E))``: the features the probe uses."""
        return self.encoder(image)

    def forward(
        self, source: torch.Tensor, target: torch.Tensor, pose_scale: float = 1.0, au_scale: float = 1.0
    ) -> TCAEOutput:
        """One twin-cycle pass on a batch of pairs ``(B, 3, S, S)`` in [0, 1].

        Source and target share one encoder call (and the two changed faces another) so BatchNorm sees
        both, and a DDP step has a single forward per module.

        ``pose_scale`` multiplies the pose decoder's fields (tau_P and tau_-P) wherever they are used; 1 is
        the paper. At 0 the pose branch is switched off: its fields are exactly zero, and no gradient
        reaches the pose decoder or the pose branch of the encoder through them (nor through the pose
        logit, which keeps its value), so with a zero initial Adam state they stay as initialised. The
        training loop uses it to start the pose decoder after the AU decoder (``loss.pose_start_step``).
        ``au_scale`` does the same for the AU decoder's fields (tau_A, tau_-A; ``loss.au_start_step``).
        """
        b = source.shape[0]
        phi, psi = self.encoder(torch.cat((source, target)))  # (2B, E) each
        phi_s, phi_t, psi_s, psi_t = phi[:b], phi[b:], psi[:b], psi[b:]

        # tau_A moves the AUs of I_s to those of I_t, tau_P the head pose
        au_where = (psi_s,) if self.spec.au_decoder_sees_pose else ()  # where the face is, if D_A asks
        field_au, mask_au = _scaled(*self.au_decoder(phi_s, phi_t, *au_where), au_scale)
        field_pose, mask_pose = _scaled(*self.pose_decoder(psi_s, psi_t), pose_scale)
        au_support = None
        if self.spec.au_within_head:  # the head's support bounds the AU gate
            au_support = torch.sigmoid(mask_pose if self.spec.au_moves_head else mask_pose.detach())
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
        au_where_back = (psi_sa,) if self.spec.au_decoder_sees_pose else ()
        field_au_back, _ = _scaled(*self.au_decoder(phi_sa, phi_s, *au_where_back), au_scale)  # tau_-A
        field_pose_back, _ = _scaled(*self.pose_decoder(psi_sp, psi_s), pose_scale)  # tau_-P
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
