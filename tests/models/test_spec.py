"""`preprocess_numpy` (the ONNX Runtime path, no torch) against torch's `preprocess` on random and real crops:
equal to 1e-6 of the input range everywhere, and bit for bit for every resize facskit's models use; and bit
for bit against a plain float32 / float64 reference everywhere, the fast halving path (256 -> 128) too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facskit.models import spec as spec_module
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


def _reference(crops: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The arithmetic `preprocess_numpy` must reproduce, written out plainly for the whole batch: float32
    ``(x - mean) / std``; then per pass and output ``t0 * w0`` rounded to float32 and, tap by tap,
    ``out + t_k * w_k`` computed in float64 (the product is exact there) and rounded to float32."""
    mean, std = np.array(spec.mean, np.float32), np.array(spec.std, np.float32)
    planes = ((crops.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2)  # (B, 3, S, S)
    if planes.shape[-1] == spec.input_size:
        return np.ascontiguousarray(planes)
    index, weights = spec_module._antialias_taps(planes.shape[-1], spec.input_size)

    def one_pass(x: np.ndarray) -> np.ndarray:  # along the last axis
        taps = x[..., index]  # (..., K, s)
        out = (taps[..., 0, :] * weights[0]).astype(np.float32)
        for k in range(1, len(index)):
            out = (out + taps[..., k, :] * weights[k]).astype(np.float32)
        return out

    return np.ascontiguousarray(one_pass(one_pass(planes).swapaxes(-1, -2)).swapaxes(-1, -2))


def _same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))  # signed zeros too


def _check(crops: np.ndarray, spec: ModelSpec, exact: bool) -> None:
    expected = preprocess(crops, spec).numpy()
    got = preprocess_numpy(crops, spec)
    _same_bits(got, _reference(crops, spec))
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


# Odd but valid normalisations: a negative std (zeros come out as -0.0, so the zero-weight taps at the borders
# matter), a mean hit exactly (u == 128), values near the halving path's 2^-60 and 2^60 limits, and one beyond
# them (the general path).
ODD_NORMALISATIONS = [
    (BMVC_MEAN, BMVC_STD),
    (SCC_MEAN, SCC_STD),
    ((128.0, 0.0, 3.5), (-7.3, 0.01, 1e5)),
    ((0.0, 128.0, 0.0), (2.0**59, -(2.0**-50), 1e17)),
    ((1e20, 0.0, 0.0), (1.0, 1.0, 1.0)),
]


def _crops(n: int, side: int, seed: int) -> np.ndarray:
    crops = np.random.default_rng(seed).integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    # Exact zeros (u == mean 128) up to the first row and column, then a lower input under a zero-weight
    # border tap: with a negative std the zeros are -0.0, and only that tap (+0.0) turns the sum into +0.0.
    crops[0, :, :3] = crops[0, :3] = 128
    crops[0, 3:, 3] = crops[0, 3, 3:] = 0
    crops[-1, :, -3:] = 128
    crops[-1, -2:, :, 1] = 0
    return crops


@pytest.mark.parametrize(("mean", "std"), ODD_NORMALISATIONS)
@pytest.mark.parametrize(
    ("side", "size", "batches"),
    [
        (256, 128, (1, 16, 64)),  # the halving path: the default model
        (256, 256, (1, 16, 64)),  # no resize
        (256, 192, (3,)),
        (200, 128, (3,)),
        (128, 128, (3,)),
        (96, 128, (3,)),  # upscale
        (128, 64, (3,)),  # halvings of other sizes, down to the smallest input
        (16, 8, (3,)),
        (8, 4, (3,)),
        (256, 64, (3,)),
    ],
)
def test_numpy_preprocess_is_the_reference_bit_for_bit(side, size, batches, mean, std) -> None:
    spec = ModelSpec("test", "hourglass", (), size, (6, 12), "bmvc", mean, std)
    for n in batches:
        crops = _crops(n, side, side * n + size)
        _same_bits(preprocess_numpy(crops, spec), _reference(crops, spec))


@pytest.mark.parametrize(("mean", "std"), ODD_NORMALISATIONS)
def test_halving_path_and_general_path_agree(monkeypatch, mean, std) -> None:
    spec = ModelSpec("test", "hourglass", (), 128, (6, 12), "bmvc", mean, std)
    crops = _crops(5, 256, 1)
    fast = preprocess_numpy(crops, spec)
    monkeypatch.setattr(spec_module, "_halving", lambda side: False)
    _same_bits(fast, preprocess_numpy(crops, spec))


def test_the_default_resize_takes_the_halving_path() -> None:
    assert spec_module._halving(256) and spec_module._halving(128)
    assert spec_module._scalable(BMVC_MEAN, BMVC_STD) and spec_module._scalable(SCC_MEAN, SCC_STD)
    assert not spec_module._scalable((1e20, 0.0, 0.0), (1.0, 1.0, 1.0))  # values beyond 2^60


def test_numpy_preprocess_of_no_crops_and_of_other_layouts_and_types() -> None:
    spec = _spec(128, "scc")
    assert preprocess_numpy(np.zeros((0, 256, 256, 3), np.uint8), spec).shape == (0, 3, 128, 128)
    crops = _crops(3, 260, 2)[:, 4:, ::-1][:, :, :256]  # a strided, reversed view
    _same_bits(preprocess_numpy(crops, spec), _reference(crops, spec))
    floats = crops.astype(np.float64) + 0.25
    _same_bits(preprocess_numpy(floats, spec), _reference(floats, spec))


def test_numpy_preprocess_from_several_threads() -> None:
    """The halving path reuses per-thread work arrays: threads (and crop sizes) must not share them."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [
        (_crops(4, side, seed), _spec(side // 2, "bmvc")) for seed, side in enumerate((256, 128, 256, 64) * 3)
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: preprocess_numpy(*job), jobs))
    for (crops, spec), got in zip(jobs, results, strict=True):
        _same_bits(got, _reference(crops, spec))


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
