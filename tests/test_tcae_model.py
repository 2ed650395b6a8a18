"""TCAE network invariants: warping conventions, alpha, gradients, shapes of both presets."""

import math

import pytest
import torch

from facskit.models.tcae import TCAE, TCAESpec, combine_fields, create_tcae, identity_grid, tcae_spec, warp

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


def test_pose_field_grid_makes_the_pose_field_coarse() -> None:
    # grid 4 on a 64 image: bilinear (align_corners) nodes at pixels 0, 21, 42, 63, so the field must equal
    # the upsampling of its own values there; the AU field stays dense and does not
    torch.manual_seed(0)
    spec = TCAESpec(input_size=64, filters=4, embedding_size=8, branch_layers=2, pose_field_grid=4)
    model = TCAE(spec)
    for decoder in (model.au_decoder, model.pose_decoder):
        torch.nn.init.normal_(decoder.net[-1].weight, std=0.1)  # visible fields, not the near-identity init
    out = model(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    assert out.field_pose.shape == out.field_au.shape == out.field.shape == (2, 2, 64, 64)
    assert out.mask_pose.shape == (2, 1, 64, 64) and out.pose_changed.shape == (2, 3, 64, 64)

    def from_nodes(field: torch.Tensor) -> torch.Tensor:
        nodes = field[:, :, ::21, ::21]  # (B, 2, 4, 4)
        return torch.nn.functional.interpolate(nodes, size=(64, 64), mode="bilinear", align_corners=True)

    assert out.field_pose.abs().max() > 1e-3
    assert torch.allclose(out.field_pose, from_nodes(out.field_pose), atol=1e-6)
    assert torch.allclose(out.field_pose_back, from_nodes(out.field_pose_back), atol=1e-6)
    assert not torch.allclose(out.field_au, from_nodes(out.field_au), atol=1e-4)
    # the default is the dense field of the paper
    dense = TCAE(TCAESpec(input_size=64, filters=4, embedding_size=8, branch_layers=2))
    assert dense.pose_decoder.field_grid == 0


@pytest.mark.parametrize("grid", [1, 65, -2])
def test_pose_field_grid_rejects_bad_sizes(grid: int) -> None:
    with pytest.raises(ValueError, match="pose_field_grid"):
        TCAESpec(input_size=64, pose_field_grid=grid)


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


def _live_tcae(input_size: int = 32, **spec: int | str | bool) -> TCAE:
    """A micro TCAE (seeded) whose decoders start far from the identity, so both fields are non-zero."""
    torch.manual_seed(0)
    model = TCAE(TCAESpec(input_size=input_size, filters=4, embedding_size=8, branch_layers=2, **spec))
    for decoder in (model.au_decoder, model.pose_decoder):
        torch.nn.init.normal_(decoder.net[-1].weight, std=0.1)
    return model


def _model_with_live_fields(mix: str):
    """A live micro TCAE (:func:`_live_tcae`), a pair of images, and its output on them at full scale."""
    model = _live_tcae(field_mix=mix)
    source, target = _image(seed=7), _image(seed=8)
    return model, source, target, model(source, target)


@pytest.mark.parametrize("mix", ["softmax", "au_gate"])
def test_pose_scale_zero_switches_the_pose_branch_off(mix: str) -> None:
    model, source, target, full = _model_with_live_fields(mix)
    assert full.field_pose.abs().max() > 1e-3
    assert torch.equal(model(source, target, pose_scale=1.0).field, full.field)  # 1 is the default
    half = model(source, target, pose_scale=0.5)
    assert torch.allclose(half.field_pose, 0.5 * full.field_pose)
    assert torch.allclose(half.pose_changed, warp(source, half.field_pose))  # the scaled field is used

    model.zero_grad()
    off = model(source, target, pose_scale=0.0)
    assert torch.all(off.field_pose == 0) and torch.all(off.field_pose_back == 0)
    assert torch.equal(off.mask_pose, full.mask_pose)  # the logit keeps its value
    # tau is the AU branch's part alone
    assert torch.allclose(off.field, off.alpha_au * off.field_au, atol=1e-7)
    assert torch.allclose(off.pose_changed, source, atol=1e-5)
    loss = sum(v.abs().mean() for v in (off.reconstruction - target, off.pose_cycled, off.au_cycled))
    loss = loss + off.psi_of_au_changed.abs().mean()  # reaches the pose branch of the encoder directly
    loss.backward()
    for name, p in model.pose_decoder.named_parameters():
        assert p.grad is None or torch.all(p.grad == 0), name
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.au_decoder.parameters())
    # and with the branch on, the pose decoder does get a gradient
    model.zero_grad()
    on = model(source, target)
    (on.reconstruction - target).abs().mean().backward()
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.pose_decoder.parameters())


@pytest.mark.parametrize("mix", ["softmax", "au_gate"])
def test_au_scale_zero_switches_the_au_branch_off(mix: str) -> None:
    """The mirror of pose_scale (``loss.au_start_step``): zero AU fields, tau is the pose part alone, the AU
    logit keeps its value and no gradient reaches the AU decoder; 0.5 halves the field."""
    model, source, target, full = _model_with_live_fields(mix)
    assert torch.allclose(model(source, target, au_scale=0.5).field_au, 0.5 * full.field_au)
    model.zero_grad()
    off = model(source, target, au_scale=0.0)
    assert torch.all(off.field_au == 0) and torch.all(off.field_au_back == 0)
    assert torch.equal(off.mask_au, full.mask_au)
    assert torch.allclose(off.field, off.alpha_pose * off.field_pose, atol=1e-7)
    assert torch.allclose(off.au_changed, source, atol=1e-5)
    loss = sum(v.abs().mean() for v in (off.reconstruction - target, off.pose_cycled, off.au_cycled))
    loss.backward()
    for name, p in model.au_decoder.named_parameters():
        assert p.grad is None or torch.all(p.grad == 0), name
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.pose_decoder.parameters())


def test_au_field_residual_leaves_nothing_a_pose_grid_field_could_express() -> None:
    model = _live_tcae(pose_field_grid=2, au_field_residual="uniform")
    out = model(_image(seed=3), _image(seed=4))
    # with grid 2 the pose fields are the bilinear fields a + b x + c y + d x y: the AU field is orthogonal
    # to all four, per channel, forward and back
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    bilinear = torch.stack([torch.ones_like(xs), xs, ys, xs * ys]).flatten(1)  # (4, S*S)
    for field in (out.field_au, out.field_au_back):
        assert field.abs().max() > 1e-2
        assert (field.flatten(2) @ bilinear.T).abs().max() < 1e-3
    # a field that is a pose-grid field plus a local bump keeps exactly the bump's non-bilinear part
    decoder = model.au_decoder
    smooth = (0.2 + 0.1 * xs - 0.3 * ys + 0.05 * xs * ys).expand(1, 2, 32, 32)
    fit_of_smooth = (smooth.flatten(2) @ decoder.grid_basis) @ decoder.grid_basis.T
    assert torch.allclose(fit_of_smooth.view_as(smooth), smooth, atol=1e-5)
    # the paper's default keeps the decoder's field; the option needs a coarse pose field to subtract
    assert TCAESpec().au_field_residual == "none"
    assert (
        TCAE(
            TCAESpec(input_size=32, filters=4, embedding_size=8, branch_layers=2)
        ).au_decoder.residual_of_grid
        == 0
    )
    with pytest.raises(ValueError, match="au_field_residual"):
        TCAESpec(input_size=32, au_field_residual="uniform")
    with pytest.raises(ValueError, match="au_field_residual"):
        TCAESpec(input_size=32, pose_field_grid=2, au_field_residual="half")
    with pytest.raises(ValueError, match="sigmoid AU gate"):  # softmax has no gate of the AU field alone
        TCAESpec(input_size=32, pose_field_grid=2, au_field_residual="gated")
    # checkpoints written when it was a bool
    assert TCAESpec(input_size=32, pose_field_grid=2, au_field_residual=True).au_field_residual == "uniform"
    assert TCAESpec(input_size=32, au_field_residual=False).au_field_residual == "none"
    # the basis is derived, not stored: checkpoints keep their keys
    assert "grid_basis" not in "".join(model.state_dict())


def test_gated_residual_leaves_no_grid_motion_where_the_au_gate_is_open() -> None:
    # A field that moves the face region (gate open) one way and the background (gate closed) the other
    # has no whole-image bilinear fit, so "uniform" keeps it; weighted by the gate, the face's shift is fit
    # and removed, and what is left under the open gate is ~0.
    from facskit.models.tcae import _bilinear_grid_basis, remove_grid_fit

    basis = _bilinear_grid_basis(2, 32)
    inside = torch.zeros(1, 1, 32, 32)
    inside[..., 8:24, 8:24] = 1.0
    field = torch.where(inside.bool(), 0.1, -0.1 * 16 * 16 / (32 * 32 - 16 * 16)).expand(1, 2, 32, 32)
    uniform = remove_grid_fit(field, basis)
    gate = 0.001 + 0.998 * inside  # sigmoid of large logits
    gated = remove_grid_fit(field, basis, gate)
    assert uniform[..., 8:24, 8:24].abs().mean() > 0.05  # the face-wide shift survives the uniform fit
    assert gated[..., 8:24, 8:24].abs().max() < 0.01  # and not the gated one
    # a gated fit of a field that is already a grid field removes all of it
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    smooth = torch.stack([0.1 * xs * ys, 0.2 - 0.1 * ys]).unsqueeze(0)
    assert remove_grid_fit(smooth, basis, torch.rand(1, 1, 32, 32) + 0.1).abs().max() < 1e-4


def test_gated_mix_and_coarse_pose_mask() -> None:
    model = _live_tcae(64, pose_field_grid=2, field_mix="gated", pose_mask_grid=4, au_field_residual="gated")
    out = model(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    assert torch.allclose(out.alpha_pose, torch.sigmoid(out.mask_pose)) and out.alpha_pose.std() > 1e-3
    assert torch.allclose(out.field, out.alpha_pose * out.field_pose + out.alpha_au * out.field_au, atol=1e-6)
    # the pose mask is a 4 x 4 grid upsampled: equal to the upsampling of its own nodes
    nodes = out.mask_pose[:, :, ::21, ::21]  # align_corners nodes of a 4 x 4 grid at 64 px: 0, 21, 42, 63
    up = torch.nn.functional.interpolate(nodes, size=(64, 64), mode="bilinear", align_corners=True)
    assert torch.allclose(out.mask_pose, up, atol=1e-5)
    with pytest.raises(ValueError, match="pose_mask_grid"):
        TCAESpec(input_size=32, pose_mask_grid=1)


def test_au_decoder_sees_the_source_pose_embedding_only_when_asked() -> None:
    model = _live_tcae(au_decoder_sees_pose=True)
    model.eval()  # BatchNorm on running statistics: one pair's output does not depend on the others
    source, target = _image(seed=9), _image(seed=10)
    phi, psi = model.embed(torch.cat((source, target)))
    phi_s, phi_t, psi_s = phi[:2], phi[2:], psi[:2]
    out = model(source, target)
    field, _ = model.au_decoder(phi_s, phi_t, psi_s)
    assert torch.allclose(out.field_au, field, atol=1e-6)  # forward feeds D_A (phi_s, phi_t, psi_s)
    moved, _ = model.au_decoder(phi_s, phi_t, psi_s + 1.0)
    assert (moved - field).abs().max() > 1e-4  # and psi_s changes the AU field
    # the AU field's gradient reaches the pose branch of the encoder through psi_s
    model.zero_grad()
    model(source, target).field_au.square().sum().backward()
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.encoder.pose_branch.parameters())
    # the paper's D_A takes two embeddings and no gradient of tau_A reaches the pose branch
    paper = _live_tcae()
    assert TCAESpec().au_decoder_sees_pose is False and paper.au_decoder.inputs == 2
    paper(source, target).field_au.square().sum().backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in paper.encoder.pose_branch.parameters())
    with pytest.raises(ValueError, match="takes 2 embeddings"):
        paper.au_decoder(phi_s, phi_t, psi_s)


def test_rigid_pose_decoder_moves_a_head_not_a_plane() -> None:
    from facskit.models.tcae import RigidPoseDecoder, mean_face_depth

    spec = TCAESpec(
        input_size=32, filters=4, embedding_size=8, branch_layers=2, field_mix="au_gate", pose_decoder="rigid"
    )
    decoder = RigidPoseDecoder(spec)

    def field(**motion: float) -> torch.Tensor:
        order = ("about_x", "about_y", "about_z", "shift_x", "shift_y", "log_scale")
        return decoder.field(torch.tensor([[motion.get(k, 0.0) for k in order]]))[0]  # (2, S, S)

    assert field().abs().max() == 0  # no motion: the identity warp
    # an image-plane shift t: out(p) samples the source at p - t
    assert torch.allclose(field(shift_x=0.1, shift_y=-0.2)[0], torch.full((32, 32), -0.1))
    assert torch.allclose(field(shift_x=0.1, shift_y=-0.2)[1], torch.full((32, 32), 0.2))
    # a roll (in-plane rotation) is the same 2D rotation for every depth
    grid = identity_grid(32, 32)[0].permute(2, 0, 1)  # (2, S, S): x, y
    angle = torch.tensor(0.1)
    back = torch.stack(
        [grid[0] * angle.cos() + grid[1] * angle.sin(), -grid[0] * angle.sin() + grid[1] * angle.cos()]
    )
    assert torch.allclose(field(about_z=0.1), back - grid, atol=1e-6)
    # a yaw moves the middle of the face more than its sides, and the background (depth 0) hardly at all
    yaw = field(about_y=0.2)[0]  # x displacement
    depth = mean_face_depth(32)
    centre = tuple(int(i) for i in (depth == depth.max()).nonzero()[0])
    assert yaw[centre].abs() > 0.09 and yaw[0, 0].abs() < 0.04
    # so it is not an affine field: an affine fit leaves a clear residual (a shift or roll leaves none)
    ones = torch.ones(32 * 32)
    basis = torch.stack([ones, grid[0].flatten(), grid[1].flatten()], dim=1)  # (S*S, 3)
    for f, affine in ((yaw, False), (field(about_z=0.1)[0], True)):
        coefficients = torch.linalg.lstsq(basis, f.flatten()[:, None]).solution
        residual = (f.flatten() - (basis @ coefficients)[:, 0]).abs().max()
        assert (residual < 1e-5) if affine else (residual > 0.03)
    # the decoder starts near the identity, and gradients reach it from the field
    torch.manual_seed(0)
    model = TCAE(spec)
    out = model(_image(seed=1), _image(seed=2))
    assert out.field_pose.abs().max() < 0.05 and out.mask_pose.abs().max() == 0
    out.reconstruction.mean().backward()
    assert model.pose_decoder.net[-1].weight.grad.abs().max() > 0
    with pytest.raises(ValueError, match="pose_decoder='rigid' needs"):
        TCAESpec(input_size=32, pose_decoder="rigid")  # softmax mix needs a pose mask
    with pytest.raises(ValueError, match="pose_decoder must be one of"):
        TCAESpec(input_size=32, pose_decoder="affine")


def test_head_pose_decoder_moves_the_head_over_a_still_background() -> None:
    from facskit.models.tcae import RigidPoseDecoder, mean_face_ellipse

    spec = TCAESpec(
        input_size=32, filters=4, embedding_size=8, branch_layers=2, field_mix="au_gate", pose_decoder="head"
    )
    torch.manual_seed(0)
    decoder = RigidPoseDecoder(spec, head=True)
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


def test_learned_head_support_starts_as_the_ellipse_and_can_take_in_the_hair() -> None:
    from facskit.models.tcae import RigidPoseDecoder

    spec = _head_spec(head_support="learned")
    torch.manual_seed(0)
    ellipse = RigidPoseDecoder(spec, head=True)
    learned = RigidPoseDecoder(spec, head=True, learned_support=True)
    learned.load_state_dict(ellipse.state_dict(), strict=False)  # the same MLPs, only the support differs
    psi_s, psi_t = torch.randn(3, 8), torch.randn(3, 8)
    # at the start the learnt shape is the ellipse (up to its 16 x 16 map's interpolation)
    support_learned, support_ellipse = (torch.sigmoid(d(psi_s, psi_t)[1]) for d in (learned, ellipse))
    assert (support_learned - support_ellipse).abs().max() < 0.15
    # a shape that takes in the whole crop moves the corners (hair, shoulders) with the head
    with torch.no_grad():
        for decoder in (ellipse, learned):
            decoder.net[-1].weight.zero_()
            decoder.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
        learned.head_shape.fill_(1.0)
    shift = 0.5 * math.tanh(0.2)
    assert ellipse(psi_s, psi_t)[0][:, 0, 0, 0].abs().max() < 1e-3
    assert torch.allclose(learned(psi_s, psi_t)[0][:, 0, 0, 0], torch.full((3,), -shift), atol=1e-3)
    # a TCAE with it: the shape is a parameter that the reconstruction trains
    model = TCAE(spec)
    model(_image(seed=1), _image(seed=2)).reconstruction.mean().backward()
    assert model.pose_decoder.head_shape.grad.abs().max() > 0
    with pytest.raises(ValueError, match="head_support='learned' needs pose_decoder='head'"):
        TCAESpec(input_size=32, field_mix="au_gate", pose_decoder="rigid", head_support="learned")
    with pytest.raises(ValueError, match="head_support must be one of"):
        TCAESpec(input_size=32, field_mix="au_gate", pose_decoder="head", head_support="hull")


def test_rigid_head_outline_keeps_the_source_shape_up_to_the_motion_zoom() -> None:
    from facskit.models.tcae import RigidPoseDecoder

    spec = _head_spec(head_outline="rigid")
    torch.manual_seed(0)
    free = RigidPoseDecoder(spec, head=True)
    rigid = RigidPoseDecoder(spec, head=True, rigid_outline=True)
    rigid.load_state_dict(free.state_dict())
    with torch.no_grad():  # placements that depend strongly on the embedding; no head motion, no zoom
        for decoder in (free, rigid):
            decoder.place[-1].weight.normal_(std=0.5)
            decoder.net[-1].weight.zero_()
    psi_s, psi_t, psi_other = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8)

    def half_axes(decoder: RigidPoseDecoder, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The half-axes the support was drawn with, read back from its logit: (1 - r^2) / softness."""
        logit = decoder(source, target)[1].flatten(1) * decoder.SUPPORT_SOFTNESS  # (B, S*S)
        centre = decoder.placement(target)[:, :2]
        xy = decoder.points.flatten(0, 1)[:, :2]
        d2 = (xy[None] - centre[:, None]) ** 2  # (B, S*S, 2)
        # 1 - logit = dx^2 / a^2 + dy^2 / b^2: least squares for (1 / a^2, 1 / b^2)
        inverse = torch.linalg.lstsq(d2, (1 - logit)[..., None]).solution[..., 0]
        return inverse.rsqrt()

    # free: the target's embedding sets the half-axes; rigid: the source's, whatever the target
    assert not torch.allclose(half_axes(free, psi_s, psi_t), half_axes(free, psi_s, psi_other), atol=1e-3)
    assert torch.allclose(half_axes(rigid, psi_s, psi_t), half_axes(rigid, psi_s, psi_other), atol=1e-4)
    assert torch.allclose(half_axes(rigid, psi_s, psi_t), rigid.placement(psi_s)[:, 2:], atol=1e-4)
    # ... and the head motion's zoom s scales them: the target is s times the source
    with torch.no_grad():
        rigid.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0]))
    zoom = math.exp(RigidPoseDecoder.MAX_LOG_SCALE * math.tanh(0.5))
    assert torch.allclose(half_axes(rigid, psi_s, psi_t), rigid.placement(psi_s)[:, 2:] * zoom, atol=1e-4)
    # a TCAE with it: gradients reach the placement through both embeddings
    model = TCAE(spec)
    assert model.pose_decoder.rigid_outline
    model(_image(seed=1), _image(seed=2)).reconstruction.mean().backward()
    assert model.pose_decoder.place[-1].weight.grad[2:].abs().max() > 0
    with pytest.raises(ValueError, match="head_outline='rigid' needs pose_decoder='head'"):
        TCAESpec(input_size=32, field_mix="au_gate", pose_decoder="rigid", head_outline="rigid")
    with pytest.raises(ValueError, match="head_outline must be one of"):
        TCAESpec(input_size=32, field_mix="au_gate", pose_decoder="head", head_outline="elastic")


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

    # gradients reach the head's placement through the AU term too, unless au_moves_head=False
    def placement_grad_from_au(spec: TCAESpec) -> float:
        torch.manual_seed(0)
        model = TCAE(spec)
        out = model(_image(seed=1), _image(seed=2))
        # the AU field's part of tau only: the pose field's own path to the placement is left out
        (out.alpha_au * out.field_au.detach()).sum().backward()
        grad = model.pose_decoder.place[-1].weight.grad  # None: no path at all
        return 0.0 if grad is None else float(grad.abs().max())

    assert placement_grad_from_au(spec) > 0
    assert placement_grad_from_au(_head_spec(au_within_head=True, au_moves_head=False)) == 0
    with pytest.raises(ValueError, match="au_moves_head=False needs au_within_head=True"):
        _head_spec(au_moves_head=False)
    with pytest.raises(ValueError, match="au_within_head needs pose_decoder='head'"):
        TCAESpec(input_size=32, field_mix="au_gate", pose_decoder="rigid", au_within_head=True)
    with pytest.raises(ValueError, match="an AU support needs the au_gate mix"):
        combine_fields(out.field_au, out.field_pose, out.mask_au, out.mask_pose, "softmax", support)
