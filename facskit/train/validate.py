"""Validation of a heatmap AU network: loss and AU metrics (ICC, MAE, PCC, F1) on every validation frame,
predictions gathered from all ranks in frame order, so the numbers do not depend on the world size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from facskit.metrics import au_table
from facskit.train import dist
from facskit.train.dataset import FrameCache
from facskit.train.loss import masked_mse

__all__ = ["validate"]


def _subjects_of(cache: FrameCache, frames: np.ndarray) -> np.ndarray | None:
    index = getattr(cache, "index", None)
    if index is None or "subject" not in index:
        return None
    return index["subject"].astype(str).to_numpy()[frames]


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader,
    autocast: Callable[[], Any],
    device: torch.device,
    info: dist.DistInfo,
    cache: FrameCache,
    val_frames: np.ndarray,
    spec: Any,
) -> dict[str, float]:
    """Validation loss and AU metrics on every validation frame (predictions gathered from all ranks)."""
    from facskit.targets import intensity_from_heatmaps

    model.eval()
    frames, preds, trues = [], [], []
    loss_sum, count = 0.0, 0
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            heatmaps = model(images)
        heatmaps = heatmaps.float()
        targets = batch["heatmaps"].to(device)
        loss_sum += float(masked_mse(heatmaps, targets, batch["weights"].to(device))) * len(images)
        count += len(images)
        preds.append(intensity_from_heatmaps(heatmaps, spec.convention).cpu().numpy())
        trues.append(batch["intensities"].numpy())
        frames.append(np.asarray(batch["frame"]))
    local = (
        np.concatenate(frames) if frames else np.zeros(0, np.int64),
        np.concatenate(preds) if preds else np.zeros((0, len(spec.aus))),
        np.concatenate(trues) if trues else np.zeros((0, len(spec.aus))),
    )
    gathered = dist.all_gather_objects(info, local)
    loss_sum, count = dist.all_reduce_sum(info, [loss_sum, float(count)], device)
    frame_ids = np.concatenate([g[0] for g in gathered])
    order = np.argsort(frame_ids, kind="stable")
    pred = np.concatenate([g[1] for g in gathered])[order]
    true = np.concatenate([g[2] for g in gathered])[order]
    subjects = _subjects_of(cache, frame_ids[order])
    table = au_table(pred, true, spec.aus, subjects=subjects)
    row: dict[str, float] = {"val_loss": loss_sum / max(count, 1)}
    for column, name in (("ICC", "icc"), ("MAE", "mae"), ("PCC", "pcc"), ("F1", "f1")):
        row[f"val_{name}"] = float(table.loc["Mean", column])
    for au_name in table.index[:-1]:
        row[f"val_icc_{au_name}"] = float(table.loc[au_name, "ICC"])
    return row
