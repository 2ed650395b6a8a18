"""Training of the heatmap AU networks: dataset and augmentation, the loop, checkpoints, DDP.

``train(config, run_dir)`` runs or resumes one experiment; ``facskit train`` is its command line.
Heavy imports (torch) happen when these names are first used, so ``import facskit.train`` is cheap.
"""

from typing import TYPE_CHECKING

from facskit.lazy import lazy_exports

__all__ = ["HeatmapDataset", "StepSampler", "TrainResult", "augment_sample", "masked_mse", "train"]

if TYPE_CHECKING:  # pragma: no cover
    from facskit.train.augment import augment_sample
    from facskit.train.dataset import HeatmapDataset, StepSampler
    from facskit.train.loop import TrainResult, train
    from facskit.train.loss import masked_mse

_WHERE = {
    "HeatmapDataset": "facskit.train.dataset",
    "StepSampler": "facskit.train.dataset",
    "TrainResult": "facskit.train.loop",
    "augment_sample": "facskit.train.augment",
    "masked_mse": "facskit.train.loss",
    "train": "facskit.train.loop",
}


__getattr__ = lazy_exports(__name__, _WHERE)
