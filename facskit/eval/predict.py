"""Batched inference of a checkpoint over a prepared cache: one row of AU intensities per frame.

Every evaluation protocol (``evaluate``, ``crossval``, ``robustness``) reduces to the same step: run the
model on the cache's aligned crops and read its heatmaps out as 0-5 intensities. Doing it in one place keeps
the readout, the preprocessing (both derived from the model's ``ModelSpec``) and the handling of AU lists
that differ between a model and a cache identical across protocols.

A prediction table has one row per cache item, in cache order, with the columns::

    subject, sequence, frame, AU06, AU06_true, AU10, AU10_true, ...

``AU06`` is the prediction, ``AU06_true`` the label (NaN = unknown). Only AUs both the model predicts and
the cache labels appear (:func:`shared_aus`); the table's ``attrs`` name the model, the checkpoint and the
AUs that were dropped.

Run folders: ``facskit train`` writes ``best.ckpt`` (the best validation epoch), ``last.ckpt`` and
``config.yaml``; :func:`resolve_checkpoint` turns a run folder or a checkpoint file into the checkpoint to
evaluate plus the training config that says which fold was held out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from facskit.aus import au_column
from facskit.device import resolve_device
from facskit.errors import CheckpointError, UsageError

__all__ = [
    "ID_COLUMNS",
    "CropTransform",
    "ResolvedModel",
    "predict_cache",
    "prediction_columns",
    "resolve_checkpoint",
    "shared_aus",
    "true_column",
]

ID_COLUMNS: tuple[str, ...] = ("subject", "sequence", "frame")
TRUE_SUFFIX = "_true"
BEST_CHECKPOINT = "best.ckpt"
LAST_CHECKPOINT = "last.ckpt"
RUN_CONFIG = "config.yaml"

# (crop (S, S, 3) uint8, crop landmarks (68, 2) float32, cache item number) -> new crop (S, S, 3) uint8.
# The item number lets a transform draw per-frame randomness that does not depend on batching or workers.
CropTransform = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def true_column(code: int) -> str:
    """Column of the label of AU ``code`` in a prediction table: ``AU06_true``."""
    return au_column(code) + TRUE_SUFFIX


def prediction_columns(aus: Sequence[int]) -> list[str]:
    """The columns of a prediction table for ``aus``, in order (ids, then prediction and label per AU)."""
    columns = list(ID_COLUMNS)
    for code in aus:
        columns += [au_column(code), true_column(code)]
    return columns


def shared_aus(model_aus: Sequence[int], cache_aus: Sequence[int]) -> tuple[tuple[int, ...], list[str]]:
    """AUs both the model predicts and the cache labels (model order), and notes on what was left out.

    Evaluating only the intersection, and saying so, beats refusing: a BP4D model on a DISFA cache still
    has AU06, AU12 and AU17 to compare. No shared AU at all is an error.
    """
    cache_set = {int(a) for a in cache_aus}
    model_set = {int(a) for a in model_aus}
    shared = tuple(int(a) for a in model_aus if int(a) in cache_set)
    if not shared:
        raise UsageError(
            f"the model predicts AUs {sorted(model_set)} and the cache labels AUs {sorted(cache_set)}: "
            "no AU in common to evaluate"
        )
    notes = []
    unlabelled = [a for a in model_aus if int(a) not in cache_set]
    unpredicted = [a for a in cache_aus if int(a) not in model_set]
    if unlabelled:
        notes.append(
            "model AUs not labelled in the cache, not evaluated: " + ", ".join(map(au_column, unlabelled))
        )
    if unpredicted:
        notes.append(
            "cache AUs the model does not predict, not evaluated: " + ", ".join(map(au_column, unpredicted))
        )
    return shared, notes


@dataclass
class ResolvedModel:
    """A checkpoint to evaluate and what its run says about how it was trained."""

    checkpoint: Path
    run_dir: Path | None  # the run folder, when the input was one (or the checkpoint sits in one)
    config: dict[str, Any] | None  # the resolved training config (plain dict), when known
    notes: list[str] = field(default_factory=list)


def _read_run_config(run_dir: Path) -> dict[str, Any] | None:
    import yaml

    path = run_dir / RUN_CONFIG
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as error:
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"{path}: not a readable YAML config ({reason}); the run folder is damaged (give the checkpoint "
            "file instead: its own copy of the config is used)"
        ) from None
    return data if isinstance(data, dict) else None


def resolve_checkpoint(path: str | Path) -> ResolvedModel:
    """A run folder -> its ``best.ckpt`` (else ``last.ckpt``) and ``config.yaml``; a file -> itself.

    The training config is what fixes the held-out fold, so it is looked up next to a checkpoint file too
    (a checkpoint inside a run folder); the checkpoint's own copy (``extra.config``) is read later by
    :func:`facskit.eval.evaluate.evaluate` when neither exists.
    """
    path = Path(path)
    if path.is_dir():
        notes = []
        checkpoint = path / BEST_CHECKPOINT
        if not checkpoint.is_file():
            checkpoint = path / LAST_CHECKPOINT
            if not checkpoint.is_file():
                raise CheckpointError(
                    f"{path}: a folder without {BEST_CHECKPOINT} or {LAST_CHECKPOINT}; "
                    "give a run folder written by `facskit train` or a checkpoint file"
                )
            notes.append(f"no {BEST_CHECKPOINT} in {path} (no validation?); evaluating {LAST_CHECKPOINT}")
        return ResolvedModel(checkpoint, path, _read_run_config(path), notes)
    if not path.exists():
        raise CheckpointError(f"{path}: no such run folder or checkpoint file")
    run_dir = path.parent if (path.parent / RUN_CONFIG).is_file() else None
    return ResolvedModel(path, run_dir, _read_run_config(run_dir) if run_dir else None)


class _CropDataset(torch.utils.data.Dataset):
    """Cache items as uint8 crops (optionally transformed), so DataLoader workers can decode in parallel."""

    def __init__(self, cache: Any, transform: CropTransform | None) -> None:
        self.cache = cache
        self.transform = transform

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        item = self.cache[i]
        image = np.asarray(item["image"])
        if self.transform is not None:
            image = self.transform(image, np.asarray(item["landmarks"], dtype=np.float32), i)
        return torch.from_numpy(np.ascontiguousarray(image)), i


@torch.no_grad()
def predict_cache(
    model: torch.nn.Module,
    cache: Any,
    *,
    batch_size: int = 32,
    device: str = "auto",
    workers: int = 0,
    transform: CropTransform | None = None,
) -> pd.DataFrame:
    """Per-frame predictions of ``model`` (an ``AUModel``) on every item of ``cache`` (a PreparedCache or a
    ``subset`` of one), as the table described in the module docstring.

    Results do not depend on ``batch_size`` or ``workers`` beyond floating-point noise (the model is in
    eval mode, so BatchNorm uses its running statistics). ``transform`` changes each crop before the
    network sees it (the robustness protocol re-aligns crops with landmark noise).
    """
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    spec = model.spec
    aus, notes = shared_aus(spec.aus, cache.aus)
    model_pos = [list(spec.aus).index(a) for a in aus]
    cache_pos = [list(cache.aus).index(a) for a in aus]
    target = resolve_device(device, "--device")
    model = model.to(target).eval()

    from facskit.targets import intensity_from_heatmaps

    preds = np.full((len(cache), len(aus)), np.nan, dtype=np.float32)
    loader = torch.utils.data.DataLoader(
        _CropDataset(cache, transform), batch_size=batch_size, shuffle=False, num_workers=workers
    )
    for crops, items in loader:
        x = model.preprocess(crops).to(target)  # (B, 3, S, S)
        heatmaps = model(x).float()  # (B, P, m, m)
        intensities = intensity_from_heatmaps(heatmaps, spec.convention)  # (B, A_model)
        preds[items.numpy()] = intensities[:, model_pos].cpu().numpy()

    index = cache.index
    labels = index[[au_column(cache.aus[p]) for p in cache_pos]].to_numpy(dtype=np.float32)  # (N, A)
    data: dict[str, Any] = {
        "subject": index["subject"].astype(str).to_numpy(),
        "sequence": index["sequence"].astype(str).to_numpy(),
        "frame": index["frame"].to_numpy(dtype=np.int64),
    }
    for j, code in enumerate(aus):
        data[au_column(code)] = preds[:, j]
        data[true_column(code)] = labels[:, j]
    table = pd.DataFrame(data, columns=prediction_columns(aus))
    table.attrs.update({"model": spec.name, "aus": list(aus), "notes": notes})
    return table
