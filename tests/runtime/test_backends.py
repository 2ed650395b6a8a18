"""Faster backends against fp32 on real faces from the sample media and on synthetic faces, and the logic that
lets ``auto`` use a faster path only when it passed."""

from __future__ import annotations

import numpy as np
import pytest

from facskit.runtime import check as backend_check
from facskit.runtime.backends import TorchBackend, create_backend
from facskit.runtime.check import (
    MAX_ABS_DELTA,
    MAX_MEAN_DELTA,
    Verdict,
    au_deltas,
    check_backends,
    choose,
    intensities,
    select_backend,
)


@pytest.fixture(scope="module")
def tiny_model():
    import torch

    from facskit.models import create_model

    torch.manual_seed(0)
    return create_model("bmvc2018-tiny", width=32, depth=2, input_size=64)


@pytest.fixture(scope="module")
def faces(tiny_model, media_dir) -> dict[str, np.ndarray]:
    from facskit.runtime.quantize import real_face_crops, synthetic_face_crops

    videos = [media_dir / "WolfgangLanger_Pexels.mp4", media_dir / "single_face.mp4"]
    spec = tiny_model.spec
    return {
        "calibration": np.concatenate(
            [real_face_crops(spec, videos, "calibration", 8), synthetic_face_crops(spec, "calibration", 8)]
        ),
        "check": np.concatenate(
            [real_face_crops(spec, videos, "check", 8), synthetic_face_crops(spec, "check", 8)]
        ),
    }


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACSKIT_CACHE", str(tmp_path))
    return tmp_path


def test_bf16_stays_close_to_fp32_on_real_and_synthetic_faces(tiny_model, faces) -> None:
    crops = faces["check"]
    assert len(crops) >= 16
    reference = intensities(TorchBackend(tiny_model, "cpu", "fp32"), crops)
    bf16 = intensities(TorchBackend(tiny_model, "cpu", "bf16"), crops)
    mean_delta, max_delta = au_deltas(reference, bf16)
    assert max_delta > 0  # bf16 really ran (it rounds)
    assert mean_delta <= MAX_MEAN_DELTA and max_delta <= MAX_ABS_DELTA


def test_int8_is_quantised_on_faces_and_checked_against_fp32(tiny_model, faces, tmp_path) -> None:
    from facskit.runtime.backends import OnnxBackend
    from facskit.runtime.export import export_onnx
    from facskit.runtime.quantize import quantize_onnx

    fp32_path = export_onnx(tiny_model, tmp_path / "tiny.onnx")
    int8_path = quantize_onnx(fp32_path, tmp_path / "tiny-int8.onnx", faces["calibration"])
    reference = TorchBackend(tiny_model, "cpu", "fp32")
    onnx32 = backend_check.measure(reference, OnnxBackend(fp32_path), faces["check"])
    int8 = backend_check.measure(reference, OnnxBackend(int8_path, precision="int8"), faces["check"])
    assert onnx32.max_delta <= 1e-3  # same arithmetic, another runtime
    assert int8.max_delta > onnx32.max_delta  # quantisation really happened
    assert int8.images_per_s > 0 and int8.faces == len(faces["check"])
    # The verdict is what it is for an untrained net; the rule that turns deltas into a verdict is fixed:
    assert int8.passed == (int8.mean_delta <= MAX_MEAN_DELTA and int8.max_delta <= MAX_ABS_DELTA)


def test_verdict_rule_and_choice() -> None:
    fast_bad = Verdict("onnx", "int8", 0.06, 0.2, 100.0, 48)
    fast_spiky = Verdict("onnx", "int8", 0.01, 0.3, 100.0, 48)
    ok = Verdict("torch", "bf16", 0.01, 0.1, 50.0, 48)
    ref = Verdict("torch", "fp32", 0.0, 0.0, 20.0, 48)
    assert not fast_bad.passed and not fast_spiky.passed and ok.passed
    assert choose([fast_bad, fast_spiky, ok, ref]) is ok
    assert choose([fast_bad, ref]) is ref
    edge = Verdict("onnx", "int8", MAX_MEAN_DELTA, MAX_ABS_DELTA, 1.0, 1)
    assert edge.passed


def test_auto_uses_cached_verdicts_and_skips_failed_paths(tiny_model, faces, cache, monkeypatch) -> None:
    key = backend_check.verdict_key("h0", "cpu")
    monkeypatch.setattr(
        backend_check, "available_candidates", lambda *a, **k: [("onnx", "int8"), ("torch", "fp32")]
    )
    backend_check.save_verdicts(
        key, [Verdict("onnx", "int8", 0.5, 2.0, 999.0, 48), Verdict("torch", "fp32", 0.0, 0.0, 1.0, 48)]
    )
    with pytest.warns(UserWarning, match="int8 is not used"):
        chosen = select_backend(tiny_model, "h0", "cpu", "auto", "auto")
    assert (chosen.name, chosen.precision) == ("torch", "fp32")
    backend_check.save_verdicts(key, [Verdict("onnx", "int8", 0.01, 0.1, 999.0, 48)])
    assert backend_check.load_verdicts(key)[("onnx", "int8")].passed
    assert (cache / backend_check.VERDICT_FILE).is_file()


def test_auto_measures_when_no_verdict_is_cached(tiny_model, faces, cache, monkeypatch) -> None:
    monkeypatch.setattr(
        backend_check, "available_candidates", lambda *a, **k: [("torch", "bf16"), ("torch", "fp32")]
    )
    real_check = backend_check.check_backends
    calls = []

    def check(model, weights_hash, device, candidates, crops=None, progress=None):
        calls.append(candidates)
        return real_check(model, weights_hash, device, candidates, faces["check"])

    monkeypatch.setattr(backend_check, "check_backends", check)
    first = select_backend(tiny_model, "h1", "cpu", "torch", "auto")
    second = select_backend(tiny_model, "h1", "cpu", "torch", "auto")
    assert len(calls) == 1  # the second call read the cache
    assert first.check["source"] == "check (measured now)" and second.check["source"] == "check (cached)"
    assert {"mean_delta", "max_delta", "images_per_s"} <= set(second.check)  # run.json, .meta.json
    assert (first.name, first.precision) == (second.name, second.precision)
    stored = backend_check.load_verdicts(backend_check.verdict_key("h1", "cpu"))
    assert set(stored) == {("torch", "bf16"), ("torch", "fp32")}
    assert stored[("torch", "fp32")].max_delta == 0.0


def test_pinned_choices_and_impossible_ones(tiny_model) -> None:
    from facskit.errors import UsageError

    assert create_backend("torch", tiny_model, precision="bf16").precision == "bf16"
    with pytest.raises(UsageError, match="int8"):
        create_backend("torch", tiny_model, precision="int8")
    with pytest.raises(UsageError):
        select_backend(tiny_model, "h", "cpu", "onnx", "bf16")  # type: ignore[arg-type]
    assert backend_check.available_candidates("cuda", "auto", "auto", frozenset()) == [
        ("torch", "bf16"),
        ("torch", "fp32"),
    ]
    assert ("torch", "bf16") not in backend_check.available_candidates(
        "cpu", "auto", "auto", frozenset({"avx2"})
    )


def test_check_backends_reference_is_exact(tiny_model, faces) -> None:
    (verdict,) = check_backends(tiny_model, "h", "cpu", [("torch", "fp32")], faces["check"][:4])
    assert verdict.mean_delta == 0.0 and verdict.passed


def test_check_runs_torch_on_a_few_faces_and_onnx_fp32_as_the_reference(
    tiny_model, faces, cache, monkeypatch
) -> None:
    """Torch fp32 (the slowest path) sees only the warm-up and timed faces; ONNX fp32, checked against it,
    is the reference the other candidates are measured against on every face."""
    seen = []
    real_heatmaps = TorchBackend.heatmaps

    def counting(self, crops):
        seen.append(len(crops))
        return real_heatmaps(self, crops)

    monkeypatch.setattr(TorchBackend, "heatmaps", counting)
    crops = np.concatenate([faces["check"], faces["check"]])  # 32 faces: more than torch gets
    candidates = [("onnx", "fp32"), ("onnx", "int8"), ("torch", "fp32")]
    verdicts = {
        (v.backend, v.precision): v for v in check_backends(tiny_model, "h2", "cpu", candidates, crops)
    }
    assert sum(seen) == backend_check.WARMUP_FACES + backend_check.TIMING_BATCH < len(crops)
    assert set(verdicts) == set(candidates)
    assert verdicts[("onnx", "fp32")].max_delta <= 1e-3 and verdicts[("onnx", "fp32")].passed
    assert verdicts[("onnx", "int8")].faces == len(crops) and verdicts[("onnx", "int8")].max_delta > 0
    assert all(v.images_per_s > 0 for v in verdicts.values())


def test_calibrating_one_face_at_a_time_writes_the_same_int8_file(
    tiny_model, faces, tmp_path, monkeypatch
) -> None:
    """Strided MinMax calibration bounds memory without changing the ranges: byte-identical files."""
    from facskit.runtime import quantize
    from facskit.runtime.export import export_onnx

    fp32_path = export_onnx(tiny_model, tmp_path / "tiny.onnx")
    one = quantize.quantize_onnx(fp32_path, tmp_path / "one.onnx", faces["calibration"])
    monkeypatch.setattr(quantize, "CALIBRATION_BATCH", len(faces["calibration"]))
    everything = quantize.quantize_onnx(fp32_path, tmp_path / "all.onnx", faces["calibration"])
    assert one.read_bytes() == everything.read_bytes()


def test_default_face_crops_are_made_once_and_survive_damage(cache, monkeypatch) -> None:
    from facskit.models import create_model
    from facskit.runtime import quantize

    spec = create_model("bmvc2018-tiny", width=8, depth=1, input_size=32).spec
    made = []
    monkeypatch.setattr(
        quantize,
        "_make_face_crops",
        lambda s, split, v: made.append(split) or np.full((3, s.crop_size, s.crop_size, 3), 7, np.uint8),
    )
    first = quantize.face_crops(spec, "check")
    assert quantize.face_crops(spec, "check").tobytes() == first.tobytes() and made == ["check"]
    (cached,) = (cache / "crops").iterdir()
    cached.write_bytes(b"\x93NUMPY garbage")
    assert quantize.face_crops(spec, "check").shape == first.shape and made == ["check", "check"]


def test_always_torch_only_where_the_options_decide_it(monkeypatch) -> None:
    assert backend_check.always_torch("cpu", "torch", "auto")
    assert backend_check.always_torch("cpu", "auto", "bf16") and backend_check.always_torch(
        "cpu", "auto", "fp32"
    )
    assert backend_check.always_torch("cuda", "auto", "auto")  # a GPU chooses between torch paths only
    assert not backend_check.always_torch("cpu", "onnx", "auto")
    assert not backend_check.always_torch("cpu", "auto", "int8")
    monkeypatch.setattr(backend_check, "onnxruntime_installed", lambda: True)
    assert not backend_check.always_torch("cpu", "auto", "auto")  # the accuracy check decides, later
    monkeypatch.setattr(backend_check, "onnxruntime_installed", lambda: False)
    assert backend_check.always_torch("cpu", "auto", "auto")


def test_onnx_backend_names_an_unreadable_file(tmp_path) -> None:
    from facskit.errors import CheckpointError
    from facskit.runtime.backends import OnnxBackend

    pytest.importorskip("onnxruntime", reason="the onnx backend is an optional extra")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="bad.onnx: not a readable ONNX file"):
        OnnxBackend(bad)


def test_onnx_runtime_path_never_imports_torch(tiny_model, tmp_path) -> None:
    """A Detector on an .onnx file, and a Ray worker's whole first task (warm-up, the recipe's detector, a
    chunk of video), in a fresh process: neither torch (~1 s, ~200 MB a process) nor onnx is imported, and
    the worker's temporary copy of the model is gone afterwards."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("onnxruntime", reason="the onnx backend is an optional extra")
    from facskit.runtime.export import export_onnx
    from facskit.runtime.quantize import SAMPLE_CLIP

    model = export_onnx(tiny_model, tmp_path / "tiny.onnx")
    image = SAMPLE_CLIP.parent / "sample_face.jpg"  # both ship with facskit
    code = """
import json, sys
from facskit import Detector
from facskit.analyze.chunks import Chunk
from facskit.analyze.distributed import DetectorRecipe, analyze_chunk, warm_worker

model, image, video = sys.argv[1:]
detector = Detector(model=model)
result = detector.analyze(image)
warm_worker(5)
chunk = analyze_chunk(DetectorRecipe.of(detector), video, Chunk(0, 0, None, 0), max_frames=3)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx"))
rows = [len(result), len(chunk.rows)]
print(json.dumps({"rows": rows, "backend": result.attrs["backend"], "heavy": heavy}))
"""
    command = [sys.executable, "-c", code, str(model), str(image), str(SAMPLE_CLIP)]
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = subprocess.run(
        command, check=True, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(temp)}
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["heavy"] == []
    assert not list(temp.glob("facskit-ray-*"))
    assert report["backend"] == "onnx" and report["rows"][0] >= 1 and report["rows"][1] >= 3
