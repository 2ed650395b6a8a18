"""TCAE losses, paper eq. 7, each term kept per sample and returned separately for logging.

    L = L_rec / (W H 3) + lambda_1 L_1^A / (W H 2) + lambda_2 L_cyc / (W H 3) + lambda_3 L_emb / 256

* ``L_rec = |tau(I_s) - I_t|_1`` (eq. 4): the combined field must turn the source into the target.
* ``L_1^A = |tau_A|_1``: the AU field is sparse, because facial actions move small regions while head
  motion moves everything - this is what pushes head motion into the pose branch.
* ``gate_au`` (not in the paper, weight 0 by default): the mean AU gate alpha_A, see ``LossWeights.gate``.
* ``L_cyc = |tau_-A(tau_A(I_s)) - I_s|_1 + |tau_-P(tau_P(I_s)) - I_s|_1`` (eq. 5), the twin cycles.
* ``L_emb = |psi_s^A - psi_s|^2 + |phi_s^A - phi_t|^2 + |phi_s^P - phi_s|^2 + |psi_s^P - psi_t|^2`` (eq. 6):
  the AU-changed face has the target's AUs and the source's pose; the pose-changed face the reverse.

The divisions by W H 3, W H 2 and the embedding size (256 in the paper) are means, so each term is a mean
per pixel / per dimension and the weights do not depend on the resolution. Per-sample values let the
training loop keep only a window of the batch sorted by loss (the reference's self-paced curriculum,
see :func:`reduce_terms`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facskit.models.tcae import TCAEOutput

__all__ = ["LOSS_TERMS", "LossWeights", "reduce_terms", "tcae_loss_terms", "twin_ramp", "weighted_total"]

# Names of the per-sample terms, in logging order.
LOSS_TERMS = ("rec", "sparsity_au", "gate_au", "cycle_au", "cycle_pose", "emb_au", "emb_pose")


@dataclass(frozen=True)
class LossWeights:
    """lambda_1..3 of eq. 7 (L_rec has weight 1).

    Defaults are the reference code's relative weights: it used 10 for L_rec, 0.1 for the AU field's L1 and
    1 for the cycle and embedding terms, i.e. 0.01, 0.1 and 0.1 once L_rec is scaled to 1.
    """

    sparsity: float = 0.01  # lambda_1
    cycle: float = 0.1  # lambda_2
    embedding: float = 0.1  # lambda_3
    # Not in the paper (0 = eq. 7): weight of the mean AU gate alpha_A, an L1 on where the AU field is
    # applied. Why: L_1^A is on tau_A itself, so with a sigmoid gate (field_mix "au_gate") an open gate
    # costs nothing, and the trained gates were open over most of the crop (benchmarks/results/tcae.md).
    gate: float = 0.0

    def with_twin_scale(self, scale: float, sparsity_too: bool = False) -> LossWeights:
        """These weights with lambda_2 and lambda_3 (the twin-cycle terms) multiplied by ``scale``.

        ``sparsity_too`` scales lambda_1 (the AU field's L1) and the gate weight as well. Why: at the start
        both decoders give near-zero fields and the reconstruction's gradient on them is small and changes
        sign from batch to batch, while the L1's gradient always points to zero; Adam normalises both, so
        the AU decoder is held at zero from the first steps and only the pose decoder learns to warp.
        """
        sparsity, gate = (
            (self.sparsity * scale, self.gate * scale) if sparsity_too else (self.sparsity, self.gate)
        )
        return LossWeights(
            sparsity=sparsity, cycle=self.cycle * scale, embedding=self.embedding * scale, gate=gate
        )


def twin_ramp(step: int, start_step: int, ramp_steps: int) -> float:
    """Scale of the cycle and embedding-consistency weights at optimiser step ``step`` (0-based).

    0 before ``start_step``, then linear up to 1 over ``ramp_steps`` steps; 1 throughout when both are 0
    (the paper's loss from the first step).

    Why: both decoders start at the identity warp, so early on the reconstruction's gradient reaching the
    encoder is tiny while the cycle and embedding terms act at full strength, and every one of them is
    satisfied by a trivial state - zero fields and embeddings that do not change within a pair. Trained
    with the full eq. 7 from step 0 the model falls into that state and stays there (measured on the
    synthetic set: reconstruction error = the identity warp's, benchmarks/results/tcae.md). Letting the
    reconstruction start the fields first, then bringing the twin cycles in, keeps them.
    """
    if step < start_step:
        return 0.0
    if ramp_steps <= 0:
        return 1.0
    return min(1.0, (step - start_step + 1) / ramp_steps)


def _mean_abs(x: torch.Tensor) -> torch.Tensor:
    return x.abs().flatten(1).mean(dim=1)  # (B,)


def _mean_square(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).flatten(1).mean(dim=1)  # (B,)


def tcae_loss_terms(out: TCAEOutput, source: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample terms ``(B,)`` of eq. 7, already divided by W H 3, W H 2 or the embedding size.

    ``source``/``target`` are the images ``(B, 3, S, S)`` given to the model. All terms are zero when the
    pair is identical, both fields are zero and the embeddings are consistent.
    """
    source = source.float()
    return {
        "rec": _mean_abs(out.reconstruction.float() - target.float()),  # L_rec / (W H 3)
        "sparsity_au": _mean_abs(out.field_au.float()),  # L_1^A / (W H 2)
        "gate_au": out.alpha_au.float().flatten(1).mean(dim=1),  # mean alpha_A (LossWeights.gate)
        "cycle_au": _mean_abs(out.au_cycled.float() - source),  # AU half of L_cyc / (W H 3)
        "cycle_pose": _mean_abs(out.pose_cycled.float() - source),  # pose half of L_cyc / (W H 3)
        # AU-changed face: source pose, target AUs; the /256 of eq. 7 is the mean over E dimensions
        "emb_au": _mean_square(out.psi_of_au_changed.float() - out.psi_source.float())
        + _mean_square(out.phi_of_au_changed.float() - out.phi_target.float()),
        # pose-changed face: source AUs, target pose
        "emb_pose": _mean_square(out.phi_of_pose_changed.float() - out.phi_source.float())
        + _mean_square(out.psi_of_pose_changed.float() - out.psi_target.float()),
    }


def weighted_total(terms: dict[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    """Eq. 7 per sample ``(B,)`` from the per-sample terms."""
    return (
        terms["rec"]
        + weights.sparsity * terms["sparsity_au"]
        + weights.gate * terms["gate_au"]
        + weights.cycle * (terms["cycle_au"] + terms["cycle_pose"])
        + weights.embedding * (terms["emb_au"] + terms["emb_pose"])
    )


def reduce_terms(
    terms: dict[str, torch.Tensor], weights: LossWeights, window: tuple[float, float] = (0.0, 1.0)
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scalar loss to back-propagate and the batch means of each term (detached) to log.

    ``window = (lo, hi)`` keeps the samples ranked ``[lo B, hi B)`` by their total loss (easiest first), the
    reference's self-paced curriculum: it trains on the easiest half first and moves the window towards
    harder pairs while dropping the hardest 10% (likely tracking failures). ``(0, 1)`` keeps everything.
    The logged values are over the kept samples, so they are what was optimised.
    """
    total = weighted_total(terms, weights)  # (B,)
    b = total.shape[0]
    lo, hi = window
    start, stop = int(lo * b), max(int(hi * b), int(lo * b) + 1)
    keep = torch.argsort(total.detach())[start:stop] if (start, stop) != (0, b) else None
    if keep is not None:
        total = total[keep]
    logged = {
        name: (value[keep] if keep is not None else value).detach().mean() for name, value in terms.items()
    }
    logged["total"] = total.detach().mean()
    return total.mean(), logged
