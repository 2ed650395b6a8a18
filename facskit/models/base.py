"""`AUModel`, the torch base class of every AU network.

Kept apart from :mod:`facskit.models.spec` (the spec and the pure pre/post-processing) because it is an
``nn.Module``: the spec module stays free of torch, so the ONNX Runtime path can read a model's spec and
feed it without importing torch. :mod:`facskit.models.spec` still re-exports ``AUModel``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from facskit.models.spec import ModelSpec, intensity_from_heatmaps, preprocess


class AUModel(nn.Module):
    """Base of every AU network: `forward(x) -> heatmaps (B, P, H, W)` plus the spec it was built from.

    The spec is a plain attribute, not a buffer, so the state_dict holds weights only (the BMVC'18
    release must load into it with no extra key).
    """

    spec: ModelSpec

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec

    def preprocess(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        return preprocess(crops, self.spec)

    def intensities(self, heatmaps: torch.Tensor) -> torch.Tensor:
        return intensity_from_heatmaps(heatmaps, self.spec.convention)


__all__ = ["AUModel"]
