"""The TCAE embeddings of a prepared cache's frames: what the probes measure and LP-FT starts from.

Kept apart from the probes because both kinds use it: the frozen-feature probes fit on these arrays, and
fine-tuning with a linear head fits that head on the frozen ``phi`` of its training rows first.
"""

from __future__ import annotations

import numpy as np
import torch

from facskit.models.tcae import TCAE
from facskit.tcae.pairs import CachePairDataset


@torch.no_grad()
def embed_cache(
    model: TCAE,
    images: CachePairDataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(phi (N, E), psi (N, E))`` float32 for every frame (or for ``rows``), BatchNorm in eval mode."""
    model = model.to(device).eval()
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    phis, psis = [], []
    for start in range(0, len(rows), batch_size):
        batch = torch.stack([images[int(i)] for i in rows[start : start + batch_size]])
        phi, psi = model.embed(batch.to(device))
        phis.append(phi.float().cpu().numpy())
        psis.append(psi.float().cpu().numpy())
    return np.concatenate(phis), np.concatenate(psis)
