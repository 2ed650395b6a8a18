"""Each eq. 7 term is zero where it must be and positive otherwise; the loss window keeps easy pairs."""

import torch

from facskit.models.tcae import TCAE, TCAEOutput, TCAESpec
from facskit.tcae.losses import (
    LOSS_TERMS,
    LossWeights,
    reduce_terms,
    tcae_loss_terms,
    twin_ramp,
    weighted_total,
)


def _output(source: torch.Tensor, target: torch.Tensor, field_scale: float = 0.0, emb_gap: float = 0.0):
    """A hand-made TCAEOutput: fields constant ``field_scale``, embeddings consistent up to ``emb_gap``."""
    b, _, h, w = source.shape
    field = torch.full((b, 2, h, w), field_scale)
    emb = torch.zeros(b, 8)
    mask = torch.zeros(b, 1, h, w)
    return TCAEOutput(
        phi_source=emb,
        psi_source=emb,
        phi_target=emb,
        psi_target=emb,
        field_au=field,
        field_pose=field,
        mask_au=mask,
        mask_pose=mask,
        alpha_au=mask + 0.5,
        alpha_pose=mask + 0.5,
        field=field,
        au_changed=source,
        pose_changed=source,
        reconstruction=source,
        phi_of_au_changed=emb + emb_gap,
        psi_of_au_changed=emb + emb_gap,
        phi_of_pose_changed=emb + emb_gap,
        psi_of_pose_changed=emb + emb_gap,
        field_au_back=field,
        field_pose_back=field,
        au_cycled=source,
        pose_cycled=source,
    )


def test_all_terms_zero_for_identical_images_zero_fields() -> None:
    image = torch.rand(3, 3, 16, 16)
    terms = tcae_loss_terms(_output(image, image), image, image)
    assert set(terms) == set(LOSS_TERMS)
    for name, value in terms.items():
        assert value.shape == (3,)
        # the gate term is the mean AU gate: zero only where the gate is shut, and weighted 0 by default
        assert torch.all(value == (0.5 if name == "gate_au" else 0)), name
    total, logged = reduce_terms(terms, LossWeights())
    assert total.item() == 0 and logged["total"].item() == 0
    assert torch.allclose(weighted_total(terms, LossWeights(gate=0.2)), torch.full((3,), 0.1))


def test_terms_positive_when_violated() -> None:
    source, target = torch.zeros(2, 3, 16, 16), torch.ones(2, 3, 16, 16)
    out = _output(source, target, field_scale=0.5, emb_gap=1.0)
    out.au_cycled = out.au_cycled + 0.25
    out.pose_cycled = out.pose_cycled + 0.5
    terms = tcae_loss_terms(out, source, target)
    assert torch.allclose(terms["rec"], torch.ones(2))  # |0 - 1| per pixel, mean = /(W H 3)
    assert torch.allclose(terms["sparsity_au"], torch.full((2,), 0.5))  # mean |tau_A| = /(W H 2)
    assert torch.allclose(terms["cycle_au"], torch.full((2,), 0.25))
    assert torch.allclose(terms["cycle_pose"], torch.full((2,), 0.5))
    assert torch.allclose(terms["emb_au"], torch.full((2,), 2.0))  # two squared gaps of 1, mean over E
    assert torch.allclose(terms["emb_pose"], torch.full((2,), 2.0))
    w = LossWeights(sparsity=0.01, cycle=0.1, embedding=0.1)
    expected = 1 + 0.01 * 0.5 + 0.1 * 0.75 + 0.1 * 4.0
    assert torch.allclose(weighted_total(terms, w), torch.full((2,), expected))


def test_model_losses_zero_flow_identical_pair_reconstructs() -> None:
    # A real model on an identical pair: reconstruction error is exactly the warp of a near-zero field.
    torch.manual_seed(0)
    model = TCAE(TCAESpec(input_size=32, filters=4, embedding_size=8, branch_layers=2)).eval()
    for decoder in (model.au_decoder, model.pose_decoder):
        last = decoder.net[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        terms = tcae_loss_terms(model(image, image), image, image)
    for name in ("rec", "sparsity_au", "cycle_au", "cycle_pose", "emb_au", "emb_pose"):
        assert terms[name].abs().max() < 1e-5, name


def test_window_keeps_easiest() -> None:
    terms = {name: torch.zeros(10) for name in LOSS_TERMS}
    terms["rec"] = torch.arange(10, dtype=torch.float32)
    total, logged = reduce_terms(terms, LossWeights(), window=(0.0, 0.5))
    assert total.item() == 2.0  # mean of 0..4
    total, _ = reduce_terms(terms, LossWeights(), window=(0.4, 0.9))
    assert total.item() == 6.0  # mean of 4..8
    assert logged["rec"].item() == 2.0


def test_twin_ramp_warm_up() -> None:
    assert twin_ramp(0, 0, 0) == 1.0 and twin_ramp(500, 0, 0) == 1.0  # the paper: full loss from step 0
    assert twin_ramp(0, 10, 20) == 0.0 and twin_ramp(9, 10, 20) == 0.0
    assert twin_ramp(10, 10, 20) == 1 / 20 and twin_ramp(19, 10, 20) == 0.5
    assert twin_ramp(29, 10, 20) == 1.0 and twin_ramp(1000, 10, 20) == 1.0
    assert twin_ramp(10, 10, 0) == 1.0


def test_twin_scale_zero_keeps_only_reconstruction_and_sparsity() -> None:
    source, target = torch.zeros(2, 3, 16, 16), torch.ones(2, 3, 16, 16)
    out = _output(source, target, field_scale=0.5, emb_gap=1.0)
    out.au_cycled = out.au_cycled + 0.25
    terms = tcae_loss_terms(out, source, target)
    weights = LossWeights(sparsity=0.01, cycle=0.1, embedding=0.1)
    off = weighted_total(terms, weights.with_twin_scale(0.0))
    assert torch.allclose(off, terms["rec"] + 0.01 * terms["sparsity_au"])
    half = weighted_total(terms, weights.with_twin_scale(0.5))
    assert torch.allclose(
        half - off, 0.05 * (terms["cycle_au"] + terms["cycle_pose"] + terms["emb_au"] + terms["emb_pose"])
    )


def test_twin_scale_can_hold_the_sparsity_too() -> None:
    weights = LossWeights(sparsity=0.01, cycle=0.1, embedding=0.1)
    assert weights.with_twin_scale(0.0).sparsity == 0.01  # the paper: the L1 from step 0
    held = weights.with_twin_scale(0.0, sparsity_too=True)
    assert held == LossWeights(sparsity=0.0, cycle=0.0, embedding=0.0)
    gated = LossWeights(sparsity=0.01, cycle=0.1, embedding=0.1, gate=0.04)
    assert gated.with_twin_scale(0.0).gate == 0.04  # held with the L1, or not, alike
    assert gated.with_twin_scale(0.5, sparsity_too=True).gate == 0.02
    assert weights.with_twin_scale(0.5, sparsity_too=True).sparsity == 0.005
    assert weights.with_twin_scale(1.0, sparsity_too=True) == weights
