"""Heatmap targets for AU intensity regression and the readout that inverts them.

Both papers encode an AU intensity (0-5) as Gaussian blobs at the AU's two points (``facskit.aus``):

* ``"bmvc"`` (Sanchez-Lozano et al., BMVC'18, sec. 3): one map per AU holding both points (pixel-wise
  maximum of the two Gaussians); amplitude = intensity and the spread grows with intensity. The paper
  gives no formula and the reference repository ships inference only, so facskit fixes the law
  ``sigma = BMVC_SIGMA_BASE + BMVC_SIGMA_PER_INTENSITY * intensity`` in 64-grid pixels
  (1.5 px at intensity 1 up to 3.5 px at intensity 5; scaled with ``map_size / 64``).
* ``"scc"`` (Fan et al., AAAI'20): one map per point, ``2A`` maps ordered AU-major (channel ``2a`` is
  point 0 of AU ``a``, ``2a + 1`` its point 1), ``sigma = 2`` on the 64 grid, peak = intensity.

Coordinates: points arrive in crop pixels (``crop_size`` grid) and are moved to the map grid with
``q = (p + 0.5) * map_size / crop_size - 0.5`` (pixel edges aligned, as ``facskit.align.rescale_points``):
heatmap pixel ``j`` is the centre of crop pixels ``4j .. 4j + 3`` for 256 -> 64, which is also the centre
of the receptive field of an output pixel of a stride-4 network.

Peak exactness: a Gaussian sampled on the grid peaks below its amplitude when its centre falls between
pixels. Each Gaussian is divided by its sampled peak (when the centre lies on the map), so the map
maximum is exactly the intensity and :func:`intensity_from_heatmaps` inverts :func:`gaussian_heatmaps`.

Unknown labels: NaN intensities give all-zero maps (never NaN, so a masked loss stays finite) and weight 0
in :func:`heatmap_weights`; the loss multiplies per-map errors by these weights.

Every function accepts numpy arrays or torch tensors and returns the same type (and device).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from facskit.aus import MAX_INTENSITY

__all__ = [
    "BMVC_SIGMA_BASE",
    "BMVC_SIGMA_PER_INTENSITY",
    "MAX_INTENSITY",
    "SCC_SIGMA",
    "Convention",
    "gaussian_heatmaps",
    "heatmap_sigmas",
    "heatmap_weights",
    "intensity_from_heatmaps",
    "maps_per_au",
]

Convention = Literal["bmvc", "scc"]

SCC_SIGMA = 2.0  # SCC Gaussian standard deviation, 64-grid pixels (AAAI'20)
BMVC_SIGMA_BASE = 1.0  # BMVC spread law, 64-grid pixels: sigma = base + per_intensity * intensity
BMVC_SIGMA_PER_INTENSITY = 0.5
REFERENCE_MAP_SIZE = 64  # grid on which the sigmas above are defined


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _check_convention(convention: str) -> None:
    if convention not in ("bmvc", "scc"):
        raise ValueError(f"unknown heatmap convention {convention!r}; valid conventions are 'bmvc', 'scc'")


def maps_per_au(convention: Convention) -> int:
    """How many output maps one AU has: 1 for ``"bmvc"``, 2 for ``"scc"`` (so P = A * maps_per_au)."""
    _check_convention(convention)
    return 1 if convention == "bmvc" else 2


def heatmap_sigmas(intensities: Any, convention: Convention, map_size: int = 64) -> Any:
    """Gaussian standard deviation in map pixels per AU ``(B, A)`` for the given intensities ``(B, A)``."""
    _check_convention(convention)
    scale = map_size / REFERENCE_MAP_SIZE
    if convention == "scc":
        ones = (
            intensities.new_ones(intensities.shape) if _is_torch(intensities) else np.ones_like(intensities)
        )
        return ones * (SCC_SIGMA * scale)
    return (BMVC_SIGMA_BASE + BMVC_SIGMA_PER_INTENSITY * intensities) * scale


def gaussian_heatmaps(
    points: Any,
    intensities: Any,
    convention: Convention,
    crop_size: int = 256,
    map_size: int = 64,
) -> Any:
    """Target heatmaps from AU points and intensities.

    ``points``: ``(B, A, 2, 2)`` = (sample, AU, point, xy) in crop pixels (``crop_size`` grid).
    ``intensities``: ``(B, A)`` in [0, 5]; NaN = unknown (all-zero maps, see :func:`heatmap_weights`).
    Returns float maps ``(B, A, S, S)`` for ``"bmvc"`` or ``(B, 2A, S, S)`` for ``"scc"`` with
    ``S = map_size``, in the input's type (numpy or torch, torch keeps device and float dtype).
    """
    _check_convention(convention)
    if _is_torch(points) or _is_torch(intensities):
        import torch

        pts_t = torch.as_tensor(points)
        dtype = pts_t.dtype if pts_t.is_floating_point() else torch.float32
        pts_t = pts_t.to(dtype)
        inten_t = torch.as_tensor(intensities, dtype=dtype, device=pts_t.device)
        return _heatmaps(torch, pts_t, inten_t, convention, crop_size, map_size)
    pts = np.asarray(points)
    dtype = pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float32
    return _heatmaps(
        np, pts.astype(dtype), np.asarray(intensities, dtype=dtype), convention, crop_size, map_size
    )


def _heatmaps(xp: Any, points: Any, intensities: Any, convention: str, crop_size: int, map_size: int) -> Any:
    """Backend-generic body of :func:`gaussian_heatmaps`; ``xp`` is ``numpy`` or ``torch``."""
    if points.ndim != 4 or tuple(points.shape[2:]) != (2, 2):
        raise ValueError(f"points must have shape (B, A, 2, 2), got {tuple(points.shape)}")
    if tuple(intensities.shape) != tuple(points.shape[:2]):
        raise ValueError(
            f"intensities must have shape {tuple(points.shape[:2])}, got {tuple(intensities.shape)}"
        )
    batch, num_aus = points.shape[:2]
    known = ~xp.isnan(intensities)  # (B, A)
    amp = xp.where(known, intensities, xp.zeros_like(intensities))  # (B, A)
    sigma = heatmap_sigmas(amp, convention, map_size)[:, :, None]  # (B, A, 1)

    q = (points + 0.5) * (map_size / crop_size) - 0.5  # (B, A, 2, 2) map pixels
    qx, qy = q[..., 0], q[..., 1]  # (B, A, 2)
    if xp is np:
        grid = np.arange(map_size, dtype=points.dtype)
    else:
        grid = xp.arange(map_size, dtype=points.dtype, device=points.device)
    two_var = 2.0 * sigma**2  # (B, A, 1)
    gx = xp.exp(-((grid - qx[..., None]) ** 2) / two_var[..., None])  # (B, A, 2, S)
    gy = xp.exp(-((grid - qy[..., None]) ** 2) / two_var[..., None])  # (B, A, 2, S)

    # Sampled peak of each Gaussian: from its centre to the nearest pixel, if the centre is on the map.
    near_x = xp.clip(xp.round(qx), 0, map_size - 1)
    near_y = xp.clip(xp.round(qy), 0, map_size - 1)
    dx, dy = qx - near_x, qy - near_y  # (B, A, 2)
    on_map = (xp.abs(dx) <= 0.5) & (xp.abs(dy) <= 0.5)
    peak = xp.exp(-(dx**2 + dy**2) / two_var)  # (B, A, 2)
    peak = xp.where(on_map, peak, xp.ones_like(peak))
    scale = amp[:, :, None] / peak  # (B, A, 2)

    maps = scale[..., None, None] * gy[..., :, None] * gx[..., None, :]  # (B, A, 2, S, S)
    if convention == "scc":
        return maps.reshape(batch, 2 * num_aus, map_size, map_size)  # (B, 2A, S, S)
    if xp is np:
        return maps.max(axis=2)  # (B, A, S, S)
    return maps.amax(dim=2)  # (B, A, S, S)


def heatmap_weights(intensities: Any, convention: Convention) -> Any:
    """Per-map loss weights: 1 for a known label, 0 for NaN; ``(B, A)`` for ``"bmvc"``, ``(B, 2A)`` for
    ``"scc"`` (each AU's weight repeated for its two maps, AU-major like the maps)."""
    _check_convention(convention)
    if _is_torch(intensities):
        import torch

        inten = intensities if intensities.is_floating_point() else intensities.float()
        weights = (~torch.isnan(inten)).to(inten.dtype)  # (B, A)
        return weights.repeat_interleave(maps_per_au(convention), dim=-1)
    inten = np.asarray(intensities, dtype=np.float64)
    weights = (~np.isnan(inten)).astype(np.float32)  # (B, A)
    return np.repeat(weights, maps_per_au(convention), axis=-1)


def intensity_from_heatmaps(maps: Any, convention: Convention) -> Any:
    """AU intensities ``(B, A)`` from heatmaps ``(B, P, h, w)``: each map's maximum clipped to [0, 5];
    for ``"scc"`` the mean of the AU's two point maps (P = 2A, AU-major)."""
    _check_convention(convention)
    if maps.ndim != 4:
        raise ValueError(f"maps must have shape (B, P, h, w), got {tuple(maps.shape)}")
    batch, num_maps = maps.shape[:2]
    if _is_torch(maps):
        peaks = maps.flatten(2).amax(dim=-1).clamp(0.0, MAX_INTENSITY)  # (B, P)
    else:
        peaks = np.clip(np.asarray(maps).reshape(batch, num_maps, -1).max(axis=-1), 0.0, MAX_INTENSITY)
    if convention == "bmvc":
        return peaks
    if num_maps % 2:
        raise ValueError(f"'scc' maps come in pairs (2 per AU), got {num_maps} maps")
    return peaks.reshape(batch, num_maps // 2, 2).mean(-1)  # (B, A)
