"""facskit checkpoints: a file alone rebuilds the model; every bad file is one clear CheckpointError."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from facskit.errors import CheckpointError
from facskit.models import FORMAT_VERSION, create_model, load_checkpoint, load_model, save_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = create_model("scc-lite", input_size=64, aus=(1, 2, 4), k=3).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    training = {
        "dataset": "synthetic",
        "subjects": ["S1", "S2"],
        "epochs": np.int64(3),
        "loss": np.float32(0.5),
    }
    save_checkpoint(path, model, {"training": training, "run": Path("/runs/x")})
    return path, model


def test_round_trip_rebuilds_an_equal_model(saved: tuple[Path, torch.nn.Module]) -> None:
    path, model = saved
    loaded, info = load_checkpoint(path)
    assert loaded.spec == model.spec
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert info["format_version"] == FORMAT_VERSION
    assert info["aus"] == [1, 2, 4]
    assert info["training"] == {"dataset": "synthetic", "subjects": ["S1", "S2"], "epochs": 3, "loss": 0.5}
    assert info["extra"] == {"run": "/runs/x"}
    assert info["readout"]["convention"] == "scc"
    assert not list(path.parent.glob("*.tmp"))  # the atomic write leaves no temporary file


def test_load_model_takes_a_name_or_a_path(saved: tuple[Path, torch.nn.Module]) -> None:
    path, model = saved
    assert load_model(path).spec == model.spec
    assert load_model("bmvc2018-tiny").spec.name == "bmvc2018-tiny"
    with pytest.raises(CheckpointError, match="neither a model name .*bmvc2018.* nor an existing file"):
        load_model("nope.ckpt")


def test_truncated_file(saved: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(saved[0].read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 100, pickle.dumps({"format": "facskit-checkpoint"}), pickle.dumps([1, 2, 3])],
    ids=["empty", "zeros", "plain-pickle-dict", "plain-pickle-list"],
)
def test_garbage_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)


def test_other_torch_files_and_versions(saved: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="not a facskit checkpoint; .*import-weights"):
        load_checkpoint(path)
    data = torch.load(saved[0], weights_only=True)
    data["format_version"] = FORMAT_VERSION + 1
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=f"format {FORMAT_VERSION + 1}"):
        load_checkpoint(path)


def test_mismatched_weights(saved: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    data = torch.load(saved[0], weights_only=True)
    data["state_dict"]["head.out.weight"] = torch.zeros(7, 32, 1, 1)
    del data["state_dict"]["head.out.bias"]
    data["state_dict"]["extra.weight"] = torch.zeros(1)
    path = tmp_path / "mismatch.ckpt"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=r"1 missing \(head\.out\.bias\); 1 unexpected .*wrong shapes"):
        load_checkpoint(path)


def test_unpicklable_extra_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="extra.fn holds a function"):
        save_checkpoint(tmp_path / "x.ckpt", create_model("bmvc2018-tiny"), {"fn": lambda: 0})
    assert not list(tmp_path.iterdir())
