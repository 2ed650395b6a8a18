"""The training dataset over a prepared cache, and the resumable step sampler that feeds it.

Determinism is the design constraint: a sample's augmentation comes from a generator seeded by
``(seed, epoch, frame)`` and the order of an epoch from one seeded by ``(seed, epoch)``, so what a step
sees depends on neither the number of DataLoader workers, nor the number of DDP ranks, nor whether the run
was resumed. The sampler yields ``(epoch, frame)`` pairs, so persistent workers (whose dataset copies
never see a ``set_epoch`` call) still draw the right epoch's augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from facskit.align import rescale_points
from facskit.aus import au_points
from facskit.config import AugmentConfig, Config
from facskit.errors import DatasetError, UsageError
from facskit.models.spec import ModelSpec, preprocess, resize_crops
from facskit.targets import gaussian_heatmaps, heatmap_weights
from facskit.train.augment import augment_sample

__all__ = [
    "FrameCache",
    "HeatmapDataset",
    "StepSampler",
    "au_columns_of",
    "evenly_spaced",
    "make_loaders",
    "split_frames",
]


class FrameCache(Protocol):
    """What the trainer needs of ``facskit.data.PreparedCache`` (architecture.md, facskit.data)."""

    aus: tuple[int, ...]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> dict[str, Any]: ...


def au_columns_of(cache_aus: Sequence[int], model_aus: Sequence[int]) -> np.ndarray:
    """Positions in the cache's intensity vector of each model AU; an AU the cache lacks is an error,
    because training it would only ever see "unknown"."""
    position = {int(code): i for i, code in enumerate(cache_aus)}
    missing = [code for code in model_aus if int(code) not in position]
    if missing:
        raise ValueError(
            f"the model predicts AUs {missing} that the cache does not label (cache AUs: {list(cache_aus)}); "
            "set model.overrides.aus to a subset of the cache's AUs"
        )
    return np.asarray([position[int(code)] for code in model_aus], dtype=np.int64)


class HeatmapDataset(Dataset):
    """Cache frames -> (network input, target heatmaps, per-map loss weights, intensities).

    Items are addressed by ``(epoch, position)`` with ``position`` into ``frames`` (cache row numbers);
    ``augment=None`` gives the un-augmented validation view.

    Returns a dict: ``image (3, S, S)`` float (the spec's normalisation, resized to its input size),
    ``heatmaps (P, m, m)`` float32, ``weights (P,)`` float32 (0 for an unknown label), ``intensities (A,)``
    float32 with NaN = unknown, ``frame`` (cache row).
    """

    def __init__(
        self,
        cache: FrameCache,
        frames: Sequence[int] | np.ndarray,
        spec: ModelSpec,
        augment: AugmentConfig | None,
        seed: int = 0,
    ) -> None:
        self.cache = cache
        self.frames = np.asarray(frames, dtype=np.int64)
        self.spec = spec
        self.augment = augment
        self.seed = int(seed)
        self.columns = au_columns_of(cache.aus, spec.aus)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        epoch, position = key if isinstance(key, tuple) else (0, key)
        frame = int(self.frames[position])
        sample = self.cache[frame]
        image = np.asarray(sample["image"])
        landmarks = np.asarray(sample["landmarks"], dtype=np.float32)
        intensities = np.asarray(sample["intensities"], dtype=np.float32)[self.columns]  # (A,)
        crop_size, size = image.shape[0], self.spec.input_size
        if crop_size > size:
            # Down to the network's size first: augmenting a 256 crop for a 128-input model spent most of
            # the loader's time on pixels the resize then threw away (benchmarks/results/train_throughput.md).
            image = resize_crops(image[None], size)[0]
            landmarks = rescale_points(landmarks, crop_size, size).astype(np.float32)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, int(epoch), frame])
            image, landmarks = augment_sample(image, landmarks, self.augment, rng)
        crop_size = image.shape[0]
        points = au_points(landmarks[None], self.spec.aus)  # (1, A, 2, 2)
        heatmaps = gaussian_heatmaps(
            points.astype(np.float32),
            intensities[None],
            self.spec.convention,
            crop_size=crop_size,
            map_size=self.spec.map_size,
        )[0]  # (P, m, m)
        weights = heatmap_weights(intensities[None], self.spec.convention)[0]  # (P,)
        return {
            "image": preprocess(image[None], self.spec)[0],  # (3, S, S)
            "heatmaps": torch.from_numpy(np.ascontiguousarray(heatmaps, dtype=np.float32)),
            "weights": torch.from_numpy(np.asarray(weights, dtype=np.float32)),
            "intensities": torch.from_numpy(intensities),
            "frame": frame,
        }


class StepSampler(Sampler[list[tuple[int, int]]]):
    """Batch sampler over optimiser steps: one epoch is ``len(dataset) // batch_size`` global steps.

    Global step ``s`` of an epoch uses positions ``perm[s*B : (s+1)*B]`` of a seeded permutation
    (``B`` = global batch). That block is cut into ``grad_accum`` micro-batches and each micro-batch into
    ``world_size`` rank slices; this sampler yields this rank's slice of every micro-batch in order.
    So 1 process with accumulation A and N processes see exactly the same samples per step, and
    ``set_epoch(epoch, start_step)`` resumes mid-epoch at a step boundary. The last incomplete global
    batch is dropped (every step has the same size, which exact DDP equivalence needs).

    ``shuffle=False`` gives the natural order and keeps every frame (validation uses
    :func:`shard_positions` instead).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        grad_accum: int = 1,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if batch_size % (grad_accum * world_size):
            raise ValueError(
                f"train.batch_size {batch_size} is not divisible by grad_accum x world size "
                f"= {grad_accum} x {world_size}"
            )
        if num_items < batch_size:
            raise ValueError(f"{num_items} training frames are fewer than one batch of {batch_size}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.micro = batch_size // grad_accum  # global micro-batch
        self.local = self.micro // world_size  # this rank's share of a micro-batch
        self.epoch = 0
        self.start_step = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.num_items // self.batch_size

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch = int(epoch)
        self.start_step = int(start_step)

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.grad_accum

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, 0x5A4D, self.epoch]).permutation(self.num_items)
        else:
            order = np.arange(self.num_items)
        for step in range(self.start_step, self.steps_per_epoch):
            for micro in range(self.grad_accum):
                start = step * self.batch_size + micro * self.micro + self.rank * self.local
                yield [(self.epoch, int(p)) for p in order[start : start + self.local]]


def shard_positions(num_items: int, world_size: int, rank: int) -> np.ndarray:
    """Contiguous, near-equal validation shard of this rank (no padding, so no frame counts twice)."""
    bounds = np.linspace(0, num_items, world_size + 1).round().astype(int)
    return np.arange(bounds[rank], bounds[rank + 1])


def split_frames(cache: FrameCache, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Cache row numbers of the training and validation frames (subject-exclusive)."""
    from facskit.data.folds import fera2015_split, fold_split, validation_split

    n = len(cache)
    d = config.data
    index = getattr(cache, "index", None)
    if d.val_subjects and d.split != "kfold":
        raise UsageError(f"data.val_subjects applies to data.split=kfold, not {d.split!r}")
    if d.split == "none":
        train, val = np.arange(n), np.arange(0)
    else:
        if index is None or "subject" not in index:
            raise DatasetError("the cache has no subject index; use data.split=none")
        if d.split == "fera2015":
            train_mask, val_mask = fera2015_split(index)
        else:
            train_mask, val_mask = fold_split(index, d.folds, d.fold, d.fold_seed)
            if d.val_subjects:
                try:
                    train_mask, val_mask = validation_split(index, train_mask, d.val_subjects, d.fold_seed)
                except ValueError as error:
                    raise UsageError(str(error)) from None
        train, val = np.flatnonzero(train_mask), np.flatnonzero(val_mask)
    return evenly_spaced(train, d.max_train_frames), evenly_spaced(val, d.max_val_frames)


def evenly_spaced(frames: np.ndarray, limit: int | None) -> np.ndarray:
    """At most ``limit`` frames spread evenly over the (subject-ordered) list, deterministically.

    A prefix would keep only the first subjects; an even stride keeps every subject and sequence, which
    is what a frame budget is meant to preserve.
    """
    if limit is None or len(frames) <= limit:
        return frames
    return frames[np.linspace(0, len(frames) - 1, limit).round().astype(np.int64)]


def _loader(dataset: HeatmapDataset, config: Config, device: torch.device, **kwargs: Any) -> DataLoader:
    workers = config.train.workers
    options: dict[str, Any] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        options.update(persistent_workers=True, prefetch_factor=config.train.prefetch)
    return DataLoader(dataset, **options, **kwargs)


def make_loaders(
    config: Config,
    cache: FrameCache,
    train_frames: np.ndarray,
    val_frames: np.ndarray,
    spec: Any,
    device: torch.device,
    world_size: int,
    rank: int,
) -> tuple[StepSampler, DataLoader, DataLoader | None]:
    """The step sampler of this rank, the training loader it drives, and this rank's validation loader
    (None without validation frames)."""
    try:
        sampler = StepSampler(
            len(train_frames),
            config.train.batch_size,
            config.train.grad_accum,
            world_size,
            rank,
            seed=config.train.seed,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    train_set = HeatmapDataset(cache, train_frames, spec, config.augment, seed=config.train.seed)
    train_loader = _loader(train_set, config, device, batch_sampler=sampler)
    val_loader = None
    if len(val_frames):
        shard = val_frames[shard_positions(len(val_frames), world_size, rank)]
        val_set = HeatmapDataset(cache, shard, spec, augment=None, seed=config.train.seed)
        val_batch = config.train.eval_batch_size or sampler.local
        val_loader = _loader(val_set, config, device, batch_size=val_batch, shuffle=False)
    return sampler, train_loader, val_loader
