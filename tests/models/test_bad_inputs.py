"""Hostile checkpoints: non-finite weights (a diverged run), specs that describe an absurd network, weights
that do not fit their spec and damaged training checkpoints are one-line errors naming the file, raised
before a network is allocated, and the CLI never prints a traceback for them.

Every file is generated here from a micro model; no binary fixtures.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from facskit.errors import CheckpointError, UsageError
from facskit.models.checkpoint import load_checkpoint, save_checkpoint
from facskit.models.registry import MAX_MODEL_ELEMENTS, create_model, model_shell
from facskit.models.spec import ModelSpec


def micro_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("bmvc2018-tiny", width=16, depth=2, input_size=32)


def saved_payload(tmp_path: Path) -> dict[str, Any]:
    """The dict a facskit checkpoint holds, for tests to damage and write back."""
    path = save_checkpoint(tmp_path / "good.ckpt", micro_model())
    return torch.load(path, weights_only=True)


def write(payload: dict[str, Any], path: Path) -> Path:
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("key", "value"),
    [("conv1.weight", float("nan")), ("l0.bias", float("inf")), ("bn_end0.running_var", float("-inf"))],
)
def test_non_finite_weights_are_refused_naming_the_file_and_tensor(
    tmp_path: Path, key: str, value: float
) -> None:
    payload = saved_payload(tmp_path)
    payload["state_dict"][key].view(-1)[0] = value
    path = write(payload, tmp_path / "diverged.ckpt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: 1 weight tensors hold NaN or Inf ({key})") and "\n" not in message


def test_a_finite_checkpoint_still_loads_equal(tmp_path: Path) -> None:
    model = micro_model()
    path = save_checkpoint(tmp_path / "good.ckpt", model)
    loaded, info = load_checkpoint(path)
    assert info["spec"] == model.spec
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch_args": {"width": 60000, "depth": 2}}, "exceeds facskit's bound"),
        ({"arch_args": {"width": 10**9, "depth": 2}}, "exceeds facskit's bound"),
        ({"input_size": 40000}, "input_size must be in 4..1024"),
        ({"input_size": "256"}, "input_size must be a whole number"),
        ({"input_size": 32.0}, "input_size must be a whole number"),
        ({"aus": list(range(1, 500))}, "at most 64 AUs"),
        ({"aus": [6, -1]}, "an AU code must be in 1..999"),
        ({"aus": "6"}, "aus must be a list of AU codes"),
        ({"std": [0.0, 1.0, 1.0]}, "std divides the input"),
        ({"mean": [float("nan"), 0.0, 0.0]}, "mean must be finite"),
        ({"crop_size": 10**9}, "crop_size must be in 8..2048"),
        ({"arch_args": {"width": "1e8", "depth": 2}}, "width must be int"),
        ({"arch_args": {"width": 16, "depth": 2.5}}, "depth must be int"),
        ({"arch_args": {"width": 16, "depth": 2, "heads": 3}}, "unknown hourglass arguments"),
        ({"arch": "transformer"}, "unknown architecture"),
        ({"convention": None}, "heatmap convention"),
    ],
)
def test_an_absurd_spec_is_refused_before_anything_is_allocated(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    payload = saved_payload(tmp_path)
    payload["spec"].update(changes)
    path = write(payload, tmp_path / "hostile.ckpt")
    before = _max_rss_mb()
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert _max_rss_mb() - before < 200  # width 60000 used to take 8-19 GB
    assert str(caught.value).startswith(f"{path}: invalid model spec (")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_weights_are_compared_with_the_spec_before_the_network_is_built(tmp_path: Path) -> None:
    payload = saved_payload(tmp_path)
    payload["spec"]["arch_args"]["width"] = 64  # the file's weights are of a width-16 network
    path = write(payload, tmp_path / "mismatch.ckpt")
    with pytest.raises(CheckpointError, match=r"weights do not match model .*wrong shapes \(conv1.weight"):
        load_checkpoint(path)
    payload = saved_payload(tmp_path)
    payload["state_dict"]["conv1.weight"] = "not a tensor"
    with pytest.raises(CheckpointError, match="not tensors"):
        load_checkpoint(write(payload, tmp_path / "text.ckpt"))


def test_spec_and_shell_bound_the_network_size() -> None:
    spec = create_model("bmvc2018-tiny", width=16, depth=2, input_size=32).spec
    shell = model_shell(spec)
    assert next(shell.parameters()).device.type == "meta"
    with pytest.raises(ValueError, match="exceeds"):
        model_shell(spec.replace(arch_args=(("depth", 2), ("width", 50000))))
    with torch.device("meta"):  # the paper's SCC network, the largest registered one, fits the bound
        paper = create_model("scc-resnet50")
    assert sum(t.numel() for t in paper.state_dict().values()) < MAX_MODEL_ELEMENTS
    with pytest.raises(ValueError, match="input_size must be a multiple of 4"):
        ModelSpec(name="x", arch="hourglass", arch_args=(), input_size=30, aus=(6,), convention="bmvc")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": 100_000_000}, "exceeds facskit's bound"),
        ({"width": 12}, "multiple of 8"),
        ({"input_size": 40000}, "input_size must be in"),
        ({"depth": True}, "depth must be int"),
    ],
)
def test_create_model_refuses_absurd_overrides_as_usage_errors(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        create_model("bmvc2018", **overrides)
    assert isinstance(caught.value, ValueError)  # callers that catch the builders' ValueError still do


def test_init_from_and_resume_refuse_non_finite_weights(tmp_path: Path) -> None:
    from facskit.train.checkpointing import load_init_weights, read_training_checkpoint

    payload = saved_payload(tmp_path)
    payload["state_dict"]["conv1.weight"].fill_(float("nan"))
    path = write(payload, tmp_path / "nan.ckpt")
    with pytest.raises(CheckpointError, match="hold NaN or Inf"):
        load_init_weights(micro_model(), path)
    payload["extra"] = {"config": {}, "resume": {"epoch": 0}}
    with pytest.raises(CheckpointError, match="resume record lacks step_in_epoch"):
        read_training_checkpoint(write(payload, tmp_path / "resume.ckpt"))
    payload["extra"] = {"config": "x", "resume": {}}
    with pytest.raises(CheckpointError, match="not a mapping"):
        read_training_checkpoint(write(payload, tmp_path / "resume2.ckpt"))


def test_training_resume_from_a_damaged_last_checkpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from facskit.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(b"PK\x03\x04 truncated zip")
    code = main(["train", "bmvc2018-lite", "--data", str(tmp_path), "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 1 and f"{run / 'last.ckpt'}: " in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("damage", ["nan", "huge"])
def test_cli_prints_one_line_for_a_hostile_checkpoint(tmp_path: Path, damage: str) -> None:
    payload = saved_payload(tmp_path)
    if damage == "nan":
        payload["state_dict"]["l0.weight"].fill_(float("nan"))
    else:
        payload["spec"]["arch_args"]["width"] = 60000
    path = write(payload, tmp_path / f"{damage}.ckpt")
    result = subprocess.run(
        [sys.executable, "-m", "facskit", "export", str(path), "--out", str(tmp_path / "x.onnx")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert str(path) in result.stderr
    assert not (tmp_path / "x.onnx").exists()


def _tcae_payload() -> dict[str, Any]:
    import dataclasses

    from facskit.models.tcae import create_tcae
    from facskit.tcae.pretrain import RUN_FORMAT, RUN_FORMAT_VERSION

    torch.manual_seed(0)
    model = create_tcae("tcae-lite")
    return {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "spec": dataclasses.asdict(model.spec),
        "state_dict": model.state_dict(),
    }


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("nan", "hold NaN or Inf"),
        ("huge", "over the bound"),
        ("unknown_field", "invalid TCAE spec"),
        ("bad_size", "invalid TCAE spec"),
    ],
)
def test_a_hostile_tcae_checkpoint_is_one_line(tmp_path: Path, damage: str, message: str) -> None:
    from facskit.tcae.pretrain import load_tcae

    payload = _tcae_payload()
    if damage == "nan":
        next(iter(payload["state_dict"].values())).fill_(float("nan"))
    elif damage == "huge":
        payload["spec"].update(input_size=2**15, filters=4096)
    elif damage == "unknown_field":
        payload["spec"]["heads"] = 3
    else:
        payload["spec"]["input_size"] = 100
    path = write(payload, tmp_path / "tcae.ckpt")
    before = _max_rss_mb()
    with pytest.raises(CheckpointError, match=message) as caught:
        load_tcae(path)
    assert _max_rss_mb() - before < 200
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
