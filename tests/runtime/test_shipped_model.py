"""The default model's shipped ONNX files: made from this very checkpoint, equal to it within the export
tolerance, and what ``facskit analyze`` runs without importing torch.

When ``facskit/weights/default.ckpt`` changes, the files must be regenerated with
``python tools/export_default_model.py``; the first test says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facskit.analyze.model_source import DEFAULT_WEIGHTS
from facskit.runtime import shipped as shipped_module
from facskit.runtime.shipped import (
    REGENERATE,
    ShippedExports,
    choose_shipped,
    export_paths,
    read_sidecar,
    shipped_exports,
    stale_reason,
)

SAMPLE_FACE = DEFAULT_WEIGHTS.parents[1] / "assets" / "sample_face.jpg"
pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no default checkpoint installed")


def _current() -> ShippedExports:
    reason = stale_reason(DEFAULT_WEIGHTS)
    if reason is not None:
        pytest.fail(f"the shipped ONNX files do not match {DEFAULT_WEIGHTS} ({reason}): rerun `{REGENERATE}`")
    found = shipped_exports(DEFAULT_WEIGHTS)
    assert found is not None
    return found


def test_shipped_onnx_files_were_made_from_this_checkpoint() -> None:
    from facskit.models.checkpoint import load_checkpoint, weights_hash

    found = _current()
    model, _ = load_checkpoint(DEFAULT_WEIGHTS)
    assert found.weights_hash == weights_hash(model), f"weights hash differs: rerun `{REGENERATE}`"
    assert found.int8 is not None and found.int8.is_file()


def test_shipped_onnx_equals_the_checkpoint_within_the_export_tolerance() -> None:
    """Heatmaps of the fp32 file against torch fp32 on random crops (batch 1 and 4: the dynamic axis) and
    on the bundled sample face; the int8 file's AU error is the one its sidecar records."""
    import torch

    from facskit.models.checkpoint import load_checkpoint
    from facskit.models.spec import intensity_from_heatmaps, preprocess
    from facskit.runtime.backends import OnnxBackend
    from facskit.runtime.verify import VERIFY_TOLERANCE, verify_onnx

    found = _current()
    model, _ = load_checkpoint(DEFAULT_WEIGHTS)
    report = verify_onnx(model, found.fp32, n_random=4)
    assert report["random"] <= VERIFY_TOLERANCE, (
        f"{found.fp32} differs from the checkpoint: rerun `{REGENERATE}`"
    )
    int8 = OnnxBackend(found.int8, precision="int8")
    assert int8.spec == model.spec
    crops = np.random.default_rng(1).integers(
        0, 256, (4, model.spec.crop_size, model.spec.crop_size, 3), np.uint8
    )
    with torch.inference_mode():
        expected = intensity_from_heatmaps(
            model(preprocess(crops, model.spec)), model.spec.convention
        ).numpy()
    got = intensity_from_heatmaps(torch.from_numpy(int8.heatmaps(crops)), model.spec.convention).numpy()
    assert np.abs(got - expected).max() <= 5.0  # runs and reads out; its accuracy is the sidecar's verdict
    recorded = {(v["backend"], v["precision"]) for v in found.verdicts}
    assert {("onnx", "fp32"), ("onnx", "int8"), ("torch", "fp32")} <= recorded


def test_a_changed_checkpoint_is_not_served_by_stale_exports(tmp_path: Path) -> None:
    """A checkpoint replaced without rerunning the export falls back to torch, naming what changed."""
    _current()
    copy = tmp_path / "default.ckpt"
    shutil.copy(DEFAULT_WEIGHTS, copy)
    for precision in ("fp32", "int8", "sidecar"):
        shutil.copy(export_paths(DEFAULT_WEIGHTS)[precision], export_paths(copy)[precision])
    assert shipped_exports(copy) is not None
    with copy.open("ab") as handle:
        handle.write(b"\0")
    assert "changed since" in (stale_reason(copy) or "")
    assert shipped_exports(copy) is None
    shutil.copy(DEFAULT_WEIGHTS, copy)
    export_paths(copy)["int8"].write_bytes(b"x")
    assert "is not the file" in (stale_reason(copy) or "")
    sidecar = read_sidecar(copy)
    assert sidecar is not None and sidecar["checkpoint"] == "default.ckpt"


def test_analysing_with_the_default_model_never_imports_torch(tmp_path: Path) -> None:
    """``facskit analyze`` on one image with the default model, in a fresh process (``-X importtime`` lists
    every module imported): no torch, no training code, and no pandas or pyarrow (a still is written from
    arrays: a third of the start-up was importing them); the result records the backend check."""
    _current()
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "facskit", "analyze", str(SAMPLE_FACE), "--out", str(out)]
        + ["--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "FACSKIT_CACHE": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "onnx", "pandas", "pyarrow"))
    training = sorted(
        m for m in imported if m.startswith(("facskit.train", "facskit.synth", "facskit.teacher"))
    )
    assert heavy == [] and training == []
    meta = json.loads(next(out.glob("*.meta.json")).read_text())
    check = meta["attrs"]["backend_check"] if "attrs" in meta else meta["backend_check"]
    assert check["backend"] == "onnx" and "max_delta" in check
    run = json.loads((out / "run.json").read_text())
    assert run["backend_check"] == check


def _fake(verdicts: list[dict], machine: str, int8: bool = True) -> ShippedExports:
    return ShippedExports(
        checkpoint=Path("m.ckpt"),
        fp32=Path("m.onnx"),
        int8=Path("m-int8.onnx") if int8 else None,
        weights_hash="h",
        card={},
        verdicts=verdicts,
        machine=machine,
    )


def _verdict(backend: str, precision: str, mean: float, worst: float, speed: float) -> dict:
    return {
        "backend": backend,
        "precision": precision,
        "mean_delta": mean,
        "max_delta": worst,
        "images_per_s": speed,
        "faces": 48,
    }


def test_auto_choice_for_shipped_exports(monkeypatch) -> None:
    """Same machine class: the stored verdicts decide (a failing int8 is never picked). Another machine:
    accuracy from the sidecar, speed timed here (monkeypatched)."""
    here = shipped_module.machine_key()
    verdicts = [
        _verdict("onnx", "fp32", 0.0, 0.0, 50.0),
        _verdict("onnx", "int8", 0.03, 0.66, 170.0),
        _verdict("torch", "fp32", 0.0, 0.0, 11.0),
    ]
    allowed = (("onnx", "int8"), ("onnx", "fp32"), ("torch", "fp32"))
    chosen, source = choose_shipped(_fake(verdicts, here), "auto", allowed)
    assert (chosen["backend"], chosen["precision"]) == ("onnx", "fp32") and "this machine" in source
    verdicts[1] = _verdict("onnx", "int8", 0.01, 0.1, 170.0)
    chosen, _ = choose_shipped(_fake(verdicts, here), "auto", allowed)
    assert chosen["precision"] == "int8"
    monkeypatch.setattr(shipped_module, "_local_speeds", lambda s: {"fp32": 80.0, "int8": 40.0})
    chosen, source = choose_shipped(_fake(verdicts, "elsewhere"), "auto", allowed)
    assert chosen["precision"] == "fp32" and chosen["images_per_s"] == 80.0 and "timed here" in source
    chosen, _ = choose_shipped(_fake(verdicts, "elsewhere", int8=False), "auto", allowed)
    assert chosen["precision"] == "fp32"


def test_without_onnxruntime_the_checkpoint_runs_on_torch(monkeypatch) -> None:
    """An environment installed before ONNX Runtime became a core dependency keeps analysing (with torch)."""
    import facskit.runtime.backends as backends
    from facskit.runtime.shipped import shipped_backend

    _current()
    assert shipped_backend(DEFAULT_WEIGHTS, "cpu", "onnx", "fp32") is not None
    pinned_fp32 = shipped_backend(DEFAULT_WEIGHTS, "cpu", "auto", "fp32")  # the verified file, not torch
    assert pinned_fp32 is not None and pinned_fp32[0].precision == "fp32"
    monkeypatch.setattr(backends, "onnxruntime_installed", lambda: False)
    assert shipped_backend(DEFAULT_WEIGHTS, "cpu", "auto", "auto") is None
    assert shipped_backend(DEFAULT_WEIGHTS, "cpu", "torch", "fp32") is None
