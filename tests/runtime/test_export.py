"""ONNX export: dynamic batch, opset >= 17, spec in the metadata, same heatmaps as PyTorch on random and real
crops, and the ONNX Runtime backend gives the same AUs as the torch one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from facskit import Detector  # noqa: E402
from facskit.cli import main  # noqa: E402
from facskit.models.checkpoint import save_checkpoint  # noqa: E402
from facskit.models.registry import create_model  # noqa: E402
from facskit.runtime.export import export_onnx, read_onnx_spec  # noqa: E402
from facskit.runtime.verify import real_crops, verify_onnx  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("bmvc2018-tiny", width=32, depth=2, input_size=64).eval()


def test_export_has_dynamic_batch_opset_and_spec(tmp_path, model) -> None:
    path = export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"
    assert read_onnx_spec(path) == model.spec
    report = verify_onnx(model, path, n_random=3)
    assert report["random"] < 1e-4


def test_export_matches_torch_on_real_crops_and_in_analysis(tmp_path, model, media_dir, monkeypatch) -> None:
    monkeypatch.setenv("FACSKIT_CACHE", str(tmp_path / "cache"))
    checkpoint = save_checkpoint(tmp_path / "m.ckpt", model)
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(checkpoint), "--out", str(onnx_path)]) == 0
    crops = real_crops([str(media_dir / "multi_face.jpg")], model.spec)
    assert len(crops) >= 2
    assert verify_onnx(model, onnx_path, crops=crops)["real"] < 1e-4
    video = media_dir / "single_face.mp4"
    reference = Detector(model=checkpoint, backend="torch", precision="fp32").analyze(video, max_frames=4)
    for detector in (
        Detector(model=checkpoint, backend="onnx", precision="fp32"),
        Detector(model=str(onnx_path)),
    ):
        result = detector.analyze(video, max_frames=4)
        assert result.attrs["backend"] == "onnx"
        values = result[result.au_columns].to_numpy(float)
        assert np.abs(values - reference[reference.au_columns].to_numpy(float)).max() < 1e-4
        pd.testing.assert_series_equal(result["face_id"], reference["face_id"])
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx"))
