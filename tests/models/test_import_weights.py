"""Importing the BMVC'18 release: the layout in specs/ loads with no missing or extra key, and the network
computes what the published architecture computes (checked against a torch.nn.functional re-derivation)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from facskit.cli import main
from facskit.errors import CheckpointError
from facskit.models import create_model, import_audetector, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
LAYOUT_CANDIDATES = [
    ROOT / "specs" / "bmvc2018_checkpoint_layout.tsv",
    ROOT.parent / "shared" / "specs" / "bmvc2018_checkpoint_layout.tsv",
]


def _layout() -> list[tuple[str, tuple[int, ...]]]:
    for path in LAYOUT_CANDIDATES:
        if path.is_file():
            rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
            return [
                (name, tuple(int(d) for d in shape.strip("()").split(",") if d.strip()))
                for name, shape in rows
            ]
    pytest.skip("specs/bmvc2018_checkpoint_layout.tsv not found")


def _release_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the release's layout; BN statistics kept plausible so activations stay finite."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in _layout():
        if name.endswith("num_batches_tracked"):
            weights[name] = torch.tensor(1000, dtype=torch.long)
        elif name.endswith("running_var"):
            weights[name] = 0.5 + torch.rand(shape, generator=generator)
        elif name.endswith("running_mean") or name.endswith("bias"):
            weights[name] = 0.1 * torch.randn(shape, generator=generator)
        elif ".bn" in name or name.startswith("bn") or "downsample.1" in name:
            weights[name] = 0.5 + 0.5 * torch.rand(shape, generator=generator)
        else:  # convolution weights, fan-in scaled
            fan_in = int(torch.tensor(shape[1:]).prod())
            weights[name] = torch.randn(shape, generator=generator) / fan_in**0.5
    return weights


def _write_release(path: Path, weights: dict[str, torch.Tensor]) -> Path:
    torch.save({"epoch": 30, "state_dict": {f"module.{k}": v for k, v in weights.items()}}, path)
    return path


# --- an independent forward pass of the published network, torch.nn.functional only ---------------------


def _bn(x: torch.Tensor, w: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    return F.batch_norm(
        x,
        w[f"{p}.running_mean"],
        w[f"{p}.running_var"],
        w[f"{p}.weight"],
        w[f"{p}.bias"],
        training=False,
        eps=1e-5,
    )


def _bottleneck(x: torch.Tensor, w: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    out = F.relu(_bn(F.conv2d(x, w[f"{p}.conv1.weight"]), w, f"{p}.bn1"))
    out = F.relu(_bn(F.conv2d(out, w[f"{p}.conv2.weight"], padding=1), w, f"{p}.bn2"))
    out = _bn(F.conv2d(out, w[f"{p}.conv3.weight"]), w, f"{p}.bn3")
    if f"{p}.downsample.0.weight" in w:
        x = _bn(F.conv2d(x, w[f"{p}.downsample.0.weight"]), w, f"{p}.downsample.1")
    return F.relu(out + x)


def _hourglass(x: torch.Tensor, w: dict[str, torch.Tensor], level: int) -> torch.Tensor:
    up = _bottleneck(x, w, f"m0.b1_{level}")
    low = _bottleneck(F.max_pool2d(x, 2, stride=2), w, f"m0.b2_{level}")
    low = _hourglass(low, w, level - 1) if level > 1 else _bottleneck(low, w, "m0.b2_plus_1")
    low = _bottleneck(low, w, f"m0.b3_{level}")
    return up + F.interpolate(low, scale_factor=2, mode="nearest")


def _published_forward(x: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    x = F.relu(_bn(F.conv2d(x, w["conv1.weight"], w["conv1.bias"], stride=2, padding=3), w, "bn1"))
    x = F.max_pool2d(_bottleneck(x, w, "conv2"), 2)
    x = _bottleneck(_bottleneck(x, w, "conv3"), w, "conv4")
    x = _bottleneck(_hourglass(x, w, 4), w, "top_m_0")
    x = F.relu(_bn(F.conv2d(x, w["conv_last0.weight"], w["conv_last0.bias"]), w, "bn_end0"))
    return F.conv2d(x, w["l0.weight"], w["l0.bias"])


# ---------------------------------------------------------------------------------------------------------


def test_layout_is_the_models_state_dict() -> None:
    layout = _layout()
    state = create_model("bmvc2018").state_dict()
    assert [name for name, _ in layout] == list(state)
    assert all(tuple(state[name].shape) == shape for name, shape in layout)


def test_import_reproduces_the_published_forward(tmp_path: Path) -> None:
    weights = _release_weights()
    source = _write_release(tmp_path / "AUdetector.pth.tar", weights)
    model = import_audetector(source)
    assert model.spec.aus == (6, 10, 12, 14, 17) and model.spec.convention == "bmvc"
    # 64x64 is enough to exercise every layer (the hourglass bottom is 1x1) and keeps the test fast.
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x)
        reference = _published_forward(x, weights)
    assert ours.shape == (2, 5, 16, 16)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())


def test_cli_writes_a_checkpoint_that_rebuilds_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    weights = _release_weights(seed=2)
    source = _write_release(tmp_path / "AUdetector.pth.tar", weights)
    out = tmp_path / "bmvc2018.ckpt"
    assert main(["import-weights", str(source), "--out", str(out)]) == 0
    assert "AU06" in capsys.readouterr().out
    model, info = load_checkpoint(out)
    assert info["aus"] == [6, 10, 12, 14, 17]
    assert info["alignment"]["kind"] == "bmvc"
    assert info["readout"]["range"] == [0.0, 5.0]
    assert info["spec"].std == (255.0, 255.0, 255.0) and info["spec"].mean == (0.0, 0.0, 0.0)
    for name, tensor in weights.items():
        assert torch.equal(model.state_dict()[name], tensor), name
    # Refuses to overwrite without --force.
    assert main(["import-weights", str(source), "--out", str(out)]) == 2


def test_missing_keys_are_listed(tmp_path: Path) -> None:
    weights = _release_weights()
    for name in ("l0.weight", "l0.bias", "m0.b3_4.conv1.weight"):
        del weights[name]
    source = _write_release(tmp_path / "partial.pth.tar", weights)
    with pytest.raises(CheckpointError, match=r"3 missing \(.*l0\.weight"):
        import_audetector(source)


def test_wrong_shapes_are_reported(tmp_path: Path) -> None:
    weights = _release_weights()
    weights["l0.weight"] = torch.zeros(6, 256, 1, 1)
    weights["l0.bias"] = torch.zeros(6)
    with pytest.raises(
        CheckpointError, match=r"wrong shapes \(l0\.weight \(6, 256, 1, 1\) != \(5, 256, 1, 1\)"
    ):
        import_audetector(_write_release(tmp_path / "six.pth.tar", weights))


def test_not_a_torch_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bogus = tmp_path / "AUdetector.pth.tar"
    bogus.write_bytes(b"<html>404 not found</html>" * 10)
    with pytest.raises(CheckpointError, match="not a PyTorch file"):
        import_audetector(bogus)
    assert main(["import-weights", str(bogus), "--out", str(tmp_path / "x.ckpt")]) == 1
    assert "not a PyTorch file" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no such file"):
        import_audetector(tmp_path / "absent.pth.tar")


class _Arbitrary:
    pass


def test_pickled_objects_need_allow_pickle(tmp_path: Path) -> None:
    weights = _release_weights()
    source = tmp_path / "objects.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}, "args": _Arbitrary()}, source)
    with pytest.raises(CheckpointError, match="allow-pickle"):
        import_audetector(source)
    assert import_audetector(source, allow_pickle=True).spec.name == "bmvc2018"


def test_a_plain_pickle_is_rejected(tmp_path: Path) -> None:
    source = tmp_path / "random.pkl"
    source.write_bytes(pickle.dumps({"hello": [1, 2, 3]}))
    with pytest.raises(CheckpointError):
        import_audetector(source)
