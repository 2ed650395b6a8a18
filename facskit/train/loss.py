"""The training loss of the heatmap AU networks: masked heatmap MSE.

Both papers use MSE on heatmaps: ``sum(w * (pred - target)^2) / (n * P * m * m)`` over a micro-batch of
``n`` frames, ``P`` maps of ``m x m``, with ``w = 0`` on the maps of unknown labels. The denominator counts
masked maps too, so it is the same fixed number on every rank and micro-batch, which keeps accumulation and
DDP averaging exactly equal to one large batch.
"""

from __future__ import annotations

import torch

__all__ = ["FOREGROUND_THRESHOLD", "masked_mse"]

FOREGROUND_THRESHOLD = 0.05  # target value (intensity units, 0..5) above which a pixel is foreground


def masked_mse(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, foreground_weight: float = 1.0
) -> torch.Tensor:
    """Heatmap MSE with unknown-label maps masked out; see the module docstring for the denominator.

    pred, target: (B, P, m, m); weights: (B, P). With ``foreground_weight`` != 1, pixels where the target
    exceeds FOREGROUND_THRESHOLD count that many times (train.foreground_weight in the config).
    """
    squared = (pred.float() - target) ** 2  # (B, P, m, m)
    if foreground_weight != 1.0:
        squared = squared * (1.0 + (foreground_weight - 1.0) * (target > FOREGROUND_THRESHOLD))
    return (squared * weights[:, :, None, None]).sum() / squared.numel()
