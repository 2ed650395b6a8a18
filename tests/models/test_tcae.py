"""TCAE network invariants: warping conventions, alpha, gradients, shapes of both presets."""

import math

import pytest
import torch

from facskit.models.tcae import TCAE, TCAESpec, combine_fields, create_tcae, tcae_spec
from facskit.models.warping import identity_grid, warp

SMALL = TCAESpec(input_size=32, filters=4, embedding_size=8, branch_layers=2)


def _image(b: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g)


def test_zero_field_is_identity() -> None:
    # align_corners=True: the identity grid hits pixel centres, so the warp is lossless up to the float
    # rounding of linspace (~1e-7 of the coordinate)
    image = _image()
    out = warp(image, torch.zeros(2, 2, 32, 32))
    assert torch.allclose(out, image, atol=1e-5)


def test_identity_grid_corners() -> None:
    grid = identity_grid(5, 7)  # (1, H, W, 2)
    assert grid.shape == (1, 5, 7, 2)
    assert grid[0, 0, 0].tolist() == [-1.0, -1.0] and grid[0, -1, -1].tolist() == [1.0, 1.0]


def test_known_shift_and_its_inverse() -> None:
    size = 32
    image = _image(1, size)
    pixels = 3  # shift by 3 px in x: normalised displacement 3 * 2 / (W - 1)
    d = pixels * 2.0 / (size - 1)
    right = torch.zeros(1, 2, size, size)
    right[:, 0] = d
    shifted = warp(image, right)  # out(x) = image(x + 3)
    assert torch.allclose(shifted[..., : size - pixels], image[..., pixels:], atol=1e-5)
    back = warp(shifted, -right)  # out(x) = shifted(x - 3) = image(x)
    inner = slice(pixels, size - pixels)
    assert torch.allclose(back[..., inner], image[..., inner], atol=1e-5)


def test_alpha_sums_to_one() -> None:
    g = torch.Generator().manual_seed(1)
    fa, fp = torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 2, 8, 8, generator=g)
    ma, mp = 5 * torch.randn(2, 1, 8, 8, generator=g), 5 * torch.randn(2, 1, 8, 8, generator=g)
    field, aa, ap = combine_fields(fa, fp, ma, mp)
    assert torch.allclose(aa + ap, torch.ones_like(aa), atol=1e-6)
    assert torch.allclose(field, aa * fa + ap * fp)
    # equal fields: the combination is that field whatever the masks
    same, _, _ = combine_fields(fa, fa, ma, mp)
    assert torch.allclose(same, fa, atol=1e-6)


def test_forward_shapes_and_ranges() -> None:
    model = TCAE(SMALL)
    out = model(_image(seed=1), _image(seed=2))
    assert out.phi_source.shape == (2, 8) and out.psi_target.shape == (2, 8)
    for name in ("field_au", "field_pose", "field", "field_au_back", "field_pose_back"):
        assert getattr(out, name).shape == (2, 2, 32, 32), name
        assert getattr(out, name).abs().max() <= 1.0
    for name in ("au_changed", "pose_changed", "reconstruction", "au_cycled", "pose_cycled"):
        assert getattr(out, name).shape == (2, 3, 32, 32), name
    assert out.mask_au.shape == (2, 1, 32, 32)
    assert torch.allclose(out.alpha_au + out.alpha_pose, torch.ones(2, 1, 32, 32), atol=1e-6)


def test_gradient_reaches_every_parameter() -> None:
    from facskit.tcae.losses import LossWeights, reduce_terms, tcae_loss_terms

    torch.manual_seed(0)
    model = TCAE(SMALL)
    source, target = _image(4, seed=3), _image(4, seed=4)
    loss, _ = reduce_terms(tcae_loss_terms(model(source, target), source, target), LossWeights())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


@pytest.mark.parametrize("name,size,dim", [("tcae", 256, 256), ("tcae-lite", 64, 64)])
def test_presets(name: str, size: int, dim: int) -> None:
    model = create_tcae(name).eval()
    assert model.spec.input_size == size
    with torch.no_grad():
        phi, psi = model.embed(torch.rand(1, 3, size, size))
    assert phi.shape == psi.shape == (1, dim)


def test_reference_layout_of_paper_preset() -> None:
    # trunk 32, 64, 128, 256, 256 then 3 branch convs; decoder 256 x4, 128, 64, 32, 3 (reference sizes)
    model = create_tcae("tcae")
    trunk = [m.out_channels for m in model.encoder.trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    assert trunk == [32, 64, 128, 256, 256]
    branch = [m.out_channels for m in model.encoder.au_branch.modules() if isinstance(m, torch.nn.Conv2d)]
    assert branch == [256, 256, 256]
    dec = [m.out_channels for m in model.au_decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert dec == [256, 256, 256, 256, 128, 64, 32, 3]


def test_unknown_preset_lists_names() -> None:
    with pytest.raises(KeyError, match="tcae-lite"):
        tcae_spec("nope")
    with pytest.raises(ValueError):
        TCAESpec(input_size=100)


def test_au_gate_mix_adds_the_gated_au_field_to_the_whole_pose_field() -> None:
    g = torch.Generator().manual_seed(2)
    fa, fp = torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 2, 8, 8, generator=g)
    ma, mp = 5 * torch.randn(2, 1, 8, 8, generator=g), 5 * torch.randn(2, 1, 8, 8, generator=g)
    field, aa, ap = combine_fields(fa, fp, ma, mp, "au_gate")
    assert torch.allclose(aa, torch.sigmoid(ma)) and torch.all(ap == 1)
    assert torch.allclose(field, fp + torch.sigmoid(ma) * fa, atol=1e-6)
    # the pose logit has no say: the pose field cannot be masked into a local field
    other, _, _ = combine_fields(fa, fp, ma, -mp, "au_gate")
    assert torch.equal(field, other)
    # a closed AU gate leaves exactly the pose field (eq. 3 would mix in alpha_P < 1 there)
    closed, _, _ = combine_fields(fa, fp, torch.full_like(ma, -100.0), mp, "au_gate")
    assert torch.allclose(closed, fp, atol=1e-6)
    with pytest.raises(ValueError, match="field mix"):
        combine_fields(fa, fp, ma, mp, "nope")


def test_model_uses_its_field_mix() -> None:
    torch.manual_seed(0)
    spec = TCAESpec(input_size=32, filters=4, embedding_size=8, branch_layers=2, field_mix="au_gate")
    model = TCAE(spec)
    for decoder in (model.au_decoder, model.pose_decoder):
        torch.nn.init.normal_(decoder.net[-1].weight, std=0.1)
    out = model(_image(seed=5), _image(seed=6))
    assert torch.allclose(out.field, out.field_pose + out.alpha_au * out.field_au, atol=1e-6)
    assert not torch.allclose(out.field, out.alpha_au * out.field_au + (1 - out.alpha_au) * out.field_pose)
    assert TCAESpec().field_mix == "softmax"  # the paper's eq. 3 by default
    with pytest.raises(ValueError, match="field_mix"):
        TCAESpec(input_size=32, field_mix="nope")


def test_head_pose_decoder_moves_the_head_over_a_still_background() -> None:
    from facskit.models.tcae_head import HeadPoseDecoder, mean_face_ellipse

    spec = TCAESpec(
        input_size=32, filters=4, embedding_size=8, branch_layers=2, field_mix="au_gate", pose_decoder="head"
    )
    torch.manual_seed(0)
    decoder = HeadPoseDecoder(spec)
    psi_s, psi_t = torch.randn(3, 8), torch.randn(3, 8)
    # at the start: the identity warp, and the head where the mean face is
    field, logit = decoder(psi_s, psi_t)
    assert field.abs().max() < 0.05
    assert torch.allclose(decoder.placement(psi_t), torch.tensor(mean_face_ellipse()).float(), atol=0.02)
    # a head shift moves the face and leaves the background (the crop's corners) where it is
    with torch.no_grad():
        decoder.net[-1].weight.zero_()
        decoder.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    field, logit = decoder(psi_s, psi_t)
    shift = 0.5 * math.tanh(0.2)
    cx, cy, _, _ = mean_face_ellipse()
    centre = (round((cy + 1) / 2 * 31), round((cx + 1) / 2 * 31))
    assert torch.allclose(field[:, 0][(slice(None), *centre)], torch.full((3,), -shift), atol=1e-3)
    assert field[:, :, 0, 0].abs().max() < 1e-3 and field[:, :, -1, -1].abs().max() < 1e-3
    assert logit[:, 0][(slice(None), *centre)].min() > 5 and logit[:, 0, 0, 0].max() < -5
    # the background's own shift moves the corners and not the face
    with torch.no_grad():
        decoder.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0, 0.0]))
    field, _ = decoder(psi_s, psi_t)
    assert torch.allclose(field[:, 0, 0, 0], torch.full((3,), -shift), atol=1e-3)
    assert field[:, 0][(slice(None), *centre)].abs().max() < 1e-3
    # a yaw moves the middle of the head (its depth) most, wherever psi_t places the head
    with torch.no_grad():
        decoder.net[-1].bias.copy_(torch.tensor([0.0, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    for place_x in (0.0, 1.0):  # the mean face, then the head moved to the right
        with torch.no_grad():
            decoder.place[-1].bias.copy_(torch.tensor([place_x, 0.0, 0.0, 0.0]))
        field, _ = decoder(psi_s, psi_t)
        placed_x = decoder.placement(psi_t)[0, 0].item()
        assert (placed_x > cx + 0.2) == bool(place_x)
        peak = field[0, 0, centre[0]].abs().argmax().item()  # column of the largest x motion
        assert abs(peak - (placed_x + 1) / 2 * 31) <= 2
    # gradients reach both MLPs through a TCAE's reconstruction
    model = TCAE(spec)
    out = model(_image(seed=1), _image(seed=2))
    out.reconstruction.mean().backward()
    assert model.pose_decoder.net[-1].weight.grad.abs().max() > 0
    assert model.pose_decoder.place[-1].weight.grad.abs().max() > 0
    assert torch.isfinite(out.field_pose).all()
    with pytest.raises(ValueError, match="pose_decoder='head' needs"):
        TCAESpec(input_size=32, pose_decoder="head")


def _head_spec(**options: str) -> TCAESpec:
    """A small spec with the head pose decoder (``pose_decoder="head"``) and ``options``."""
    return TCAESpec(
        input_size=32,
        filters=4,
        embedding_size=8,
        branch_layers=2,
        field_mix="au_gate",
        pose_decoder="head",
        **options,
    )


def test_au_within_head_applies_the_au_field_on_the_head_only() -> None:
    spec = _head_spec(au_within_head=True)
    torch.manual_seed(0)
    model = TCAE(spec).eval()
    out = model(_image(seed=1), _image(seed=2))
    support = torch.sigmoid(out.mask_pose)  # the head's support, placed from psi_t
    assert torch.allclose(out.alpha_au, torch.sigmoid(out.mask_au) * support)
    corners = (..., [0, 0, -1, -1], [0, -1, 0, -1])
    assert support[corners].max() < 0.01 and support[:, :, 16, 16].min() > 0.99
    # off the head tau is the pose field alone, on it the gated AU field adds to it
    tolerance = 0.01 * float(out.field_au.detach().abs().max())
    assert torch.allclose(out.field[corners], out.field_pose[corners], atol=tolerance)
    expected = out.field_pose + torch.sigmoid(out.mask_au) * support * out.field_au
    assert torch.allclose(out.field, expected)

    # gradients reach the head's placement through the AU term too
    torch.manual_seed(0)
    model = TCAE(spec)
    out = model(_image(seed=1), _image(seed=2))
    # the AU field's part of tau only: the pose field's own path to the placement is left out
    (out.alpha_au * out.field_au.detach()).sum().backward()
    assert model.pose_decoder.place[-1].weight.grad.abs().max() > 0
    with pytest.raises(ValueError, match="au_within_head needs pose_decoder='head'"):
        TCAESpec(input_size=32, field_mix="au_gate", au_within_head=True)
    with pytest.raises(ValueError, match="an AU support needs the au_gate mix"):
        combine_fields(out.field_au, out.field_pose, out.mask_au, out.mask_pose, "softmax", support)


def test_a_stored_spec_loads_unless_it_uses_a_removed_option() -> None:
    from facskit.models.tcae import RemovedOptionError

    # a spec as checkpoints stored it before the measured-and-removed options went: all at their no-op
    # values, so it is the same network
    old = {
        **_head_spec(au_within_head=True).to_dict(),
        "pose_field_grid": 0,
        "au_field_residual": False,
        "pose_mask_grid": 0,
        "au_decoder_sees_pose": False,
        "head_support": "ellipse",
        "head_outline": "free",
        "au_moves_head": True,
    }
    assert TCAESpec.from_dict(old) == _head_spec(au_within_head=True)
    assert TCAESpec.from_dict(SMALL.to_dict()) == SMALL
    for key, value in (("pose_field_grid", 4), ("head_support", "learned"), ("field_mix", "gated")):
        with pytest.raises(RemovedOptionError, match=f"^TCAE option {key}={value!r} was removed"):
            TCAESpec.from_dict({**SMALL.to_dict(), key: value})
    with pytest.raises(RemovedOptionError, match="pose_decoder='rigid'"):
        TCAESpec.from_dict({**SMALL.to_dict(), "field_mix": "au_gate", "pose_decoder": "rigid"})
