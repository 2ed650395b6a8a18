"""Backward warping of images by displacement fields, the convention every TCAE field follows.

Conventions (all warping in facskit goes through :func:`warp`):

* A displacement field is ``(B, 2, H, W)`` with channel 0 = x (to the right) and 1 = y (down), in
  *normalised* coordinates of ``torch.nn.functional.grid_sample`` with ``align_corners=True``: -1 and +1 are
  the centres of the first and last pixels, so a displacement ``d`` is ``d * (W - 1) / 2`` pixels. This is the
  reference's ``linspace(-1, 1, W)`` base grid. The output pixel ``p`` *samples* the source at ``p + tau(p)``
  (backward warping), so a zero field is exactly the identity.
* Samples outside the image take the border value (``padding_mode="border"``), which equals the reference's
  clamping of the sampling grid to [-1, 1] but without a hand-written clamp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["identity_grid", "warp"]


def identity_grid(height: int, width: int, device: torch.device | None = None, dtype=None) -> torch.Tensor:
    """The sampling grid of the identity warp, ``(1, H, W, 2)`` (x, y) in [-1, 1] (align_corners=True)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack((grid_x, grid_y), dim=-1).unsqueeze(0)  # (1, H, W, 2)


def warp(image: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``image (B, C, H, W)`` by ``field (B, 2, h, w)``: out(p) = image(p + field(p)).

    The field is in normalised coordinates (see the module docstring); when its size differs from the
    image's, the output has the field's size (the grid is resampled, not the image).
    """
    _, _, h, w = field.shape
    grid = identity_grid(h, w, field.device, field.dtype) + field.permute(0, 2, 3, 1)  # (B, h, w, 2)
    return F.grid_sample(
        image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True
    )
