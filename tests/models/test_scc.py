"""The AAAI'20 SCC module's invariants and the SCC network's wiring, trunk layout and gradient flow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facskit.errors import CheckpointError
from facskit.models import create_model, load_trunk_weights
from facskit.models.resnet import ResNetTrunk
from facskit.models.scc import SCCModule, knn_channels


def _module(map_size: int = 6, k: int = 3, seed: int = 0) -> SCCModule:
    torch.manual_seed(seed)
    module = SCCModule(map_size, k)
    with torch.no_grad():  # non-trivial BN statistics so eval mode is not the identity
        module.bn.running_mean.uniform_(-0.2, 0.2)
        module.bn.running_var.uniform_(0.5, 1.5)
        module.bn.weight.uniform_(0.5, 1.5)
        module.bn.bias.uniform_(-0.2, 0.2)
    return module


def test_knn_is_brute_force_nearest_with_self_first() -> None:
    f = torch.randn(3, 10, 16)
    idx = knn_channels(f, 4)
    brute = torch.cdist(f, f).topk(4, dim=-1, largest=False).indices
    assert torch.equal(idx[..., 0], torch.arange(10).expand(3, 10))
    assert torch.equal(idx.sort(-1).values, brute.sort(-1).values)


@pytest.mark.parametrize("training", [False, True])
def test_permuting_channels_permutes_the_output(training: bool) -> None:
    module = _module().train(training)
    x = torch.randn(2, 9, 6, 6)
    perm = torch.randperm(9)
    out, out_perm = module(x), module(x[:, perm])
    assert torch.allclose(out[:, perm], out_perm, atol=1e-5)


def test_k1_is_a_per_channel_transform() -> None:
    """Only the self edge: f_j - f_i = 0, so out_i = ReLU(BN(phi . f_i)) depends on channel i alone."""
    module = _module(k=1).eval()
    x = torch.randn(2, 5, 6, 6)
    phi = module.edge.weight[:, :36]
    bn = module.bn
    expected = (x.reshape(2, 5, 36) @ phi.t() - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    expected = torch.relu(expected * bn.weight + bn.bias).reshape(2, 5, 6, 6)
    with torch.no_grad():
        assert torch.allclose(module(x), expected, atol=1e-5)
        changed = x.clone()
        changed[:, 1:] = torch.randn(2, 4, 6, 6)
        assert torch.allclose(module(changed)[:, 0], module(x)[:, 0])


def test_chunked_inference_equals_the_full_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import facskit.models.scc as scc

    module = _module(k=4).eval()
    x = torch.randn(3, 11, 6, 6)
    full = module(x)  # grad enabled: materialises every edge
    monkeypatch.setattr(scc, "INFERENCE_CHUNK_BYTES", 1)  # one node per chunk
    with torch.no_grad():
        chunked = module(x)
    assert torch.allclose(full, chunked, atol=1e-6)


def test_gradients_reach_every_parameter_of_the_network() -> None:
    torch.manual_seed(0)
    model = create_model("scc-lite", input_size=64).train()
    maps = model(torch.randn(4, 3, 64, 64))
    assert maps.shape == (4, 10, 16, 16)
    (maps**2).mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_ablation_switches() -> None:
    plain = create_model("scc-lite", input_size=64, scc=(False, False, False))
    assert not any("sccs" in name for name, _ in plain.named_parameters())
    one = create_model("scc-lite", input_size=64, scc=(False, False, True), k=3)
    assert one.head.sccs[2].k == 3 and isinstance(one.head.sccs[0], torch.nn.Identity)
    assert one.spec.kwargs["scc"] == (False, False, True)


def test_paper_size_network_on_meta() -> None:
    with torch.device("meta"):
        model = create_model("scc-resnet50")
        maps = model(torch.empty(1, 3, 256, 256))
    assert maps.shape == (1, 10, 64, 64)
    assert model.spec.mean == (123.68, 116.78, 103.94)
    # The reference's shared 1x1 conv is dense on the 2L edge feature: L x 2L at each level.
    assert [tuple(m.edge.weight.shape) for m in model.head.sccs] == [(256, 512), (1024, 2048), (4096, 8192)]


def test_trunk_has_torchvisions_resnet50_layout() -> None:
    with torch.device("meta"):
        trunk = ResNetTrunk("resnet50")
    state = trunk.state_dict()
    assert len(state) == 318  # torchvision's 320 minus fc.weight and fc.bias
    assert sum(p.numel() for p in trunk.parameters()) == 23_508_032
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer4.2.bn3.weight"} <= set(
        state
    )
    assert tuple(state["layer4.0.conv2.weight"].shape) == (512, 512, 3, 3)


def test_backbone_weights_load_and_mismatches_are_listed(tmp_path: Path) -> None:
    source = ResNetTrunk("resnet18", 16)
    weights = {f"module.{k}": v for k, v in source.state_dict().items()}
    weights["module.fc.weight"], weights["module.fc.bias"] = torch.zeros(1000, 128), torch.zeros(1000)
    torch.save({"state_dict": weights}, tmp_path / "imagenet.pth")
    target = ResNetTrunk("resnet18", 16)
    load_trunk_weights(target, tmp_path / "imagenet.pth")
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items())

    del weights["module.layer4.1.conv2.weight"]
    torch.save(weights, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"missing layer4\.1\.conv2\.weight"):
        load_trunk_weights(target, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_trunk_weights(ResNetTrunk("resnet18", 32), tmp_path / "imagenet.pth")


def _pixel_module(k: int = 3, channels: int = 5, map_size: int = 4) -> SCCModule:
    torch.manual_seed(0)
    module = SCCModule(map_size, k, nodes="pixels", channels=channels)
    with torch.no_grad():
        module.bn.running_mean.uniform_(-0.2, 0.2)
        module.bn.running_var.uniform_(0.5, 1.5)
    return module


@pytest.mark.parametrize("training", [False, True])
def test_pixel_nodes_follow_a_permutation_of_the_pixels(training: bool) -> None:
    """The reference code's graph: nodes are pixels, so moving pixels around moves the output with them."""
    module = _pixel_module().train(training)
    x = torch.randn(2, 5, 4, 4)
    perm = torch.randperm(16)
    out = module(x).flatten(2)
    out_perm = module(x.flatten(2)[:, :, perm].reshape(2, 5, 4, 4)).flatten(2)
    assert torch.allclose(out[:, :, perm], out_perm, atol=1e-5)


def test_pixel_nodes_with_k1_are_a_1x1_convolution() -> None:
    module = _pixel_module(k=1).eval()
    x = torch.randn(2, 5, 4, 4)
    phi, bn = module.edge.weight[:, :5], module.bn  # (C, C): one shared 1x1 filter bank
    expected = torch.einsum("oc,bchw->bohw", phi, x)
    shape = (1, 5, 1, 1)
    expected = (expected - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
    expected = torch.relu(expected * bn.weight.view(shape) + bn.bias.view(shape))
    with torch.no_grad():
        assert torch.allclose(module(x), expected, atol=1e-5)


def test_pixel_nodes_need_their_channel_count_and_build_a_network() -> None:
    with pytest.raises(ValueError, match="needs the number of channels"):
        SCCModule(4, 3, nodes="pixels")
    with pytest.raises(ValueError, match="nodes must be one of"):
        SCCModule(4, 3, nodes="edges")
    torch.manual_seed(0)
    model = create_model("scc-lite", input_size=64, nodes="pixels").train()
    assert model.head.sccs[0].edge.weight.shape == (128, 256)  # (C, 2C) at the first level
    (model(torch.randn(2, 3, 64, 64)) ** 2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
