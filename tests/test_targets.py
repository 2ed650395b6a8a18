"""Heatmap targets: readout inverts encoding in both conventions, numpy and torch, with NaN masking."""

import numpy as np
import pytest
import torch

from facskit.align import MEAN_FACE_256
from facskit.aus import BP4D_AUS, DISFA_AUS, au_points
from facskit.targets import (
    gaussian_heatmaps,
    heatmap_sigmas,
    heatmap_weights,
    intensity_from_heatmaps,
)


def _points(batch: int, codes=BP4D_AUS, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    faces = MEAN_FACE_256 + rng.normal(0, 3, size=(batch, 68, 2))  # (B, 68, 2)
    return au_points(faces, codes)  # (B, A, 2, 2)


@pytest.mark.parametrize("convention", ["bmvc", "scc"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_readout_returns_the_encoded_intensity(convention, backend):
    points = _points(4, DISFA_AUS)
    rng = np.random.default_rng(1)
    intensities = rng.uniform(0, 5, size=(4, len(DISFA_AUS)))
    intensities[0, :3] = [0.0, 5.0, 1.0]
    if backend == "torch":
        points, intensities = torch.from_numpy(points).float(), torch.from_numpy(intensities).float()
    maps = gaussian_heatmaps(points, intensities, convention)
    per_au = 1 if convention == "bmvc" else 2
    assert tuple(maps.shape) == (4, per_au * len(DISFA_AUS), 64, 64)
    assert type(maps) is type(points)
    readout = intensity_from_heatmaps(maps, convention)
    assert type(readout) is type(points) and tuple(readout.shape) == (4, len(DISFA_AUS))
    np.testing.assert_allclose(np.asarray(readout), np.asarray(intensities), atol=1e-5)


def test_numpy_and_torch_agree_and_batch_equals_single():
    points, intensities = _points(3), np.array([[0, 1, 2, 3, 4], [5, 4, 3, 2, 1], [2.5, 0, 5, 1, 0.5]])
    for convention in ("bmvc", "scc"):
        maps = gaussian_heatmaps(points, intensities, convention)
        maps_t = gaussian_heatmaps(torch.from_numpy(points), torch.from_numpy(intensities), convention)
        np.testing.assert_allclose(maps_t.numpy(), maps, atol=1e-10)
        for b in range(3):
            single = gaussian_heatmaps(points[b : b + 1], intensities[b : b + 1], convention)
            np.testing.assert_allclose(single[0], maps[b], atol=1e-12)


def test_peaks_sit_on_the_points():
    points = _points(1)  # (1, 5, 2, 2) crop pixels
    intensities = np.full((1, 5), 2.0)  # the intensity at which the BMVC sigma equals SCC's 2 px
    scc = gaussian_heatmaps(points, intensities, "scc")  # (1, 10, 64, 64)
    for channel, (x, y) in enumerate(points.reshape(-1, 2)):
        row, col = np.unravel_index(np.argmax(scc[0, channel]), (64, 64))
        # crop pixel -> map pixel: (p + 0.5) / 4 - 0.5
        assert abs(col - ((x + 0.5) / 4 - 0.5)) <= 0.5 and abs(row - ((y + 0.5) / 4 - 0.5)) <= 0.5
    bmvc = gaussian_heatmaps(points, intensities, "bmvc")  # (1, 5, 64, 64)
    np.testing.assert_allclose(bmvc[0], np.maximum(scc[0, 0::2], scc[0, 1::2]), atol=1e-12)


def test_spread_grows_with_intensity_in_bmvc_only():
    low, high = heatmap_sigmas(np.array([1.0]), "bmvc"), heatmap_sigmas(np.array([5.0]), "bmvc")
    assert high[0] > low[0]
    np.testing.assert_allclose(heatmap_sigmas(np.array([1.0, 5.0]), "scc"), [2.0, 2.0])
    points = _points(1)
    mass = [gaussian_heatmaps(points, np.full((1, 5), i), "bmvc").sum() / i for i in (1.0, 5.0)]
    assert mass[1] > mass[0]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_nan_intensities_give_zero_maps_and_zero_weight(backend):
    points, intensities = _points(2), np.array([[1.0, np.nan, 3.0, 0.0, np.nan], [np.nan] * 5])
    if backend == "torch":
        points, intensities = torch.from_numpy(points), torch.from_numpy(intensities)
    for convention, repeat in (("bmvc", 1), ("scc", 2)):
        maps = np.asarray(gaussian_heatmaps(points, intensities, convention))
        weights = np.asarray(heatmap_weights(intensities, convention))
        assert np.isfinite(maps).all()
        expected = np.repeat(~np.isnan(np.asarray(intensities)), repeat, axis=1).astype(np.float32)
        np.testing.assert_array_equal(weights, expected)
        assert (maps[weights == 0] == 0).all()


def test_readout_clips_to_the_intensity_range():
    maps = np.zeros((1, 4, 64, 64), dtype=np.float32)
    maps[0, 0, 3, 3], maps[0, 1] = 7.0, -2.0
    np.testing.assert_allclose(intensity_from_heatmaps(maps, "bmvc"), [[5.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(intensity_from_heatmaps(maps, "scc"), [[2.5, 0.0]])
    with pytest.raises(ValueError, match="valid conventions"):
        intensity_from_heatmaps(maps, "fan")  # type: ignore[arg-type]
