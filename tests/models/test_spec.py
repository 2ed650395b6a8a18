"""`preprocess_numpy` (the ONNX Runtime path, no torch) against torch's `preprocess` on random and real crops:
equal to 1e-6 of the input range everywhere, and bit for bit for every resize facskit's models use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facskit.models.spec import (
    BMVC_MEAN,
    BMVC_STD,
    SCC_MEAN,
    SCC_STD,
    ModelSpec,
    preprocess,
    preprocess_numpy,
)

NORMALISATIONS = {"bmvc": (BMVC_MEAN, BMVC_STD), "scc": (SCC_MEAN, SCC_STD)}
# PyTorch's AVX2 / AVX-512 kernels fuse the resize's multiply-adds, as preprocess_numpy does; a build without
# FMA rounds once more per tap, which the 1e-6 bound still covers.
FUSED = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def _spec(input_size: int, convention: str) -> ModelSpec:
    mean, std = NORMALISATIONS[convention]
    return ModelSpec("test", "hourglass", (), input_size, (6, 12), convention, mean, std)  # type: ignore[arg-type]


def _check(crops: np.ndarray, spec: ModelSpec, exact: bool) -> None:
    expected = preprocess(crops, spec).numpy()
    got = preprocess_numpy(crops, spec)
    assert got.shape == expected.shape and got.dtype == np.float32 and got.flags.c_contiguous
    assert np.abs(got - expected).max() <= 1e-6 * max(1.0, np.abs(expected).max())
    if exact and FUSED:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("convention", ["bmvc", "scc"])
@pytest.mark.parametrize(
    ("side", "size", "exact"),
    [
        (256, 128, True),  # cache crops into a lite model: the default model's path
        (256, 256, True),  # no resize
        (200, 128, True),  # any downscale up to 2x
        (96, 128, True),  # upscale
        (256, 64, False),  # beyond 2x: PyTorch's vectorised loop leaves part of each sum unfused
    ],
)
def test_numpy_preprocess_equals_torch_on_random_crops(convention, side, size, exact) -> None:
    crops = np.random.default_rng(side + size).integers(0, 256, size=(3, side, side, 3), dtype=np.uint8)
    _check(crops, _spec(size, convention), exact)


@pytest.mark.parametrize("convention", ["bmvc", "scc"])
def test_numpy_preprocess_equals_torch_on_real_frames(media_dir, convention) -> None:
    from facskit.io import iter_frames

    frames = [
        f.image for f, _ in zip(iter_frames(media_dir / "WolfgangLanger_Pexels.mp4"), range(2), strict=False)
    ]
    # Square 256-pixel windows of real video (faces, background, edges), as aligned crops are.
    crops = np.stack([image[y : y + 256, x : x + 256] for image in frames for y, x in ((0, 0), (60, 200))])
    _check(crops, _spec(128, convention), exact=True)
    _check(crops, _spec(256, convention), exact=True)


def test_numpy_preprocess_rejects_what_preprocess_rejects() -> None:
    with pytest.raises(ValueError, match=r"\(B, S, S, 3\)"):
        preprocess_numpy(np.zeros((64, 64, 3), np.uint8), _spec(64, "bmvc"))


def test_the_spec_module_and_the_models_package_import_without_torch() -> None:
    """What lets ONNX Runtime analysis run torch-free (end to end: tests/runtime/test_backends.py)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import facskit.models\n"
        "from facskit.models.spec import ModelSpec, preprocess_numpy\n"
        "assert 'torch' not in sys.modules\n"
        "from facskit.models import AUModel, create_model\n"  # the lazy names still resolve
        "from facskit.models.spec import AUModel as Same\n"
        "assert AUModel is Same and 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
