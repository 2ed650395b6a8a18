"""Self-supervised TCAE pretraining: the loop, its checkpoints and exact resume.

A run folder holds::

    config.yaml        the resolved TCAEConfig (also inside every checkpoint)
    last.ckpt          everything needed to continue: weights, optimiser, AMP scaler, RNG, epoch + batch
    epoch-NNN.ckpt     weights and spec after epoch NNN (what ``facskit probe --epoch`` can read)
    metrics.jsonl      one JSON line per progress report and per finished epoch (rank 0 only)

Exact resume: the pairs of an epoch are a pure function of ``(seed, epoch)`` (:class:`PairSampler`), the
network has no dropout, and the checkpoint records the next batch of the epoch, so a run killed after a
``last.ckpt`` save and resumed reaches the same weights as an uninterrupted run (CPU, bitwise; tested).
Raw-video runs resume at the start of the video that was being read (video position is the unit).

Checkpoints are plain data + tensors, readable with ``torch.load(weights_only=True)``, written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from facskit.device import resolve_device
from facskit.errors import CheckpointError, UsageError
from facskit.models.tcae import TCAE, RemovedOptionError, TCAESpec
from facskit.tcae.config import (
    TCAEConfig,
    apply_tcae_overrides,
    save_tcae_config,
    stored_tcae_config,
    tcae_config_to_dict,
)
from facskit.tcae.losses import LOSS_TERMS, LossWeights, reduce_terms, tcae_loss_terms, twin_ramp
from facskit.tcae.pairs import (
    CachePairDataset,
    FrameDifference,
    PairCurriculum,
    PairSampler,
    VideoPairStream,
    default_aligner,
    tracks_from_index,
)
from facskit.train import dist
from facskit.train.checkpointing import rng_state, save_atomically, set_rng_state
from facskit.train.optim import autocast_context, make_optimizer
from facskit.train.runlog import Progress

__all__ = ["RUN_FORMAT", "checkpoint_path", "load_tcae", "pretrain_tcae"]

RUN_FORMAT = "facskit-tcae-run"
RUN_FORMAT_VERSION = 1
LAST = "last.ckpt"


# ---------------------------------------------------------------------------------------------- checkpoints


def _read(path: Path) -> dict[str, Any]:
    from facskit.models.checkpoint import read_torch_file

    data = read_torch_file(path)
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{path}: not a TCAE checkpoint (facskit pretrain-tcae writes them)")
    if data.get("format_version") != RUN_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: TCAE checkpoint format {data.get('format_version')!r} is not supported"
        )
    return data


def checkpoint_path(run: str | Path, epoch: int | None = None) -> Path:
    """``last.ckpt`` (or ``epoch-NNN.ckpt``) of a run folder; a file path is returned as it is."""
    run = Path(run)
    if run.is_file():
        return run
    path = run / (LAST if epoch is None else f"epoch-{epoch:03d}.ckpt")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; is {run} a `facskit pretrain-tcae` run folder?")
    return path


def load_tcae(
    run: str | Path, epoch: int | None = None, device: str | torch.device = "cpu"
) -> tuple[TCAE, dict]:
    """A trained TCAE (eval mode) from a run folder or checkpoint, and the checkpoint's other entries."""
    from facskit.models.checkpoint import check_finite
    from facskit.models.registry import MAX_MODEL_ELEMENTS

    path = checkpoint_path(run, epoch)
    data = _read(path)
    try:
        spec = TCAESpec.from_dict(data["spec"])
        with torch.device("meta"):  # shapes only: a hostile spec must not allocate before it is checked
            shell = TCAE(spec)
    except RemovedOptionError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid TCAE spec ({str(error).strip()[:160]})") from None
    elements = sum(t.numel() for t in shell.state_dict().values())
    if elements > MAX_MODEL_ELEMENTS:
        raise CheckpointError(
            f"{path}: its TCAE spec describes {elements / 1e6:,.0f} M weights, over the bound"
        )
    weights = data.get("state_dict")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: no weights (state_dict) in the checkpoint")
    check_finite(path, weights)
    model = TCAE(spec)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: weights do not match the stored TCAE spec ({reason})") from None
    info = {k: v for k, v in data.items() if k not in ("state_dict", "optimizer", "scaler")}
    info["path"] = str(path)
    return model.to(device).eval(), info


# ---------------------------------------------------------------------------------------------- the loop


def _is_cache(path: Path) -> bool:
    return (path / "meta.json").is_file() and (path / "index.parquet").is_file()


def _prefetch(iterator: Iterator[Any]) -> Iterator[Any]:
    """Assemble the next batch in a background thread while the current one trains (I/O + resizing)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(next, iterator, None)
        while True:
            item = future.result()
            if item is None:
                return
            future = pool.submit(next, iterator, None)
            yield item


@dataclass
class _Position:
    """Where the run is: the epoch, the next batch of it (a video for raw videos), the optimiser steps done,
    and the summaries of the finished epochs."""

    epoch: int = 0
    next_batch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Run:
    """Everything one pretraining run holds between its steps."""

    config: TCAEConfig
    out: Path
    source: Path
    info: dist.DistInfo
    device: torch.device
    model: TCAE
    net: torch.nn.Module  # the model, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    autocast: Any
    scaler: torch.amp.GradScaler
    curriculum: PairCurriculum
    weights: LossWeights
    progress: Progress
    position: _Position

    @property
    def per_rank(self) -> int:
        return self.config.train.batch_size // self.info.world_size

    def state(self, epoch: int, next_batch: int) -> dict[str, Any]:
        """The checkpoint: weights, optimiser, scaler, RNG and where to continue (epoch, next batch)."""
        import facskit

        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "facskit_version": facskit.__version__,
            "spec": self.model.spec.to_dict(),
            "config": tcae_config_to_dict(self.config),
            "source": str(self.source),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": rng_state(),
            "epoch": epoch,
            "next_batch": next_batch,
            "step": self.position.step,
            "history": self.position.history,
        }

    def save(self, epoch: int, next_batch: int, name: str = LAST, weights_only: bool = False) -> None:
        if self.info.is_main:
            state = self.state(epoch, next_batch)
            if weights_only:
                state = {k: v for k, v in state.items() if k not in ("optimizer", "scaler")}
            save_atomically(self.out / name, state)

    def record(self, entry: dict[str, Any]) -> None:
        """One line of ``metrics.jsonl`` (rank 0 only)."""
        if self.info.is_main:
            with open(self.out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(entry) + "\n")


@dataclass
class _Pairs:
    """Where each epoch's pairs come from: a prepared cache (resumable at any batch) or raw videos."""

    steps_per_epoch: int  # 0 for raw videos: unknown until their first epoch has been read
    images: CachePairDataset | None = None
    sampler: PairSampler | None = None
    videos: list[Path] = field(default_factory=list)
    video_crop: str = "track"

    @property
    def is_cache(self) -> bool:
        return self.sampler is not None

    def batches(self, run: _Run, epoch: int, first: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(position, source (B, 3, S, S), target)`` from batch (or video) ``first`` of ``epoch``."""
        if self.sampler is not None and self.images is not None:
            images = self.images
            return (
                (first + k, *images.batch(pairs))
                for k, pairs in enumerate(self.sampler.batches(epoch, run.per_rank, first))
            )
        config = run.config
        stream = VideoPairStream(
            self.videos,
            lambda: default_aligner(
                size=256,
                detect_every=config.data.detect_every,
                crop=self.video_crop,
                max_drift=config.data.max_drift,
            ),
            run.model.spec.input_size,
            run.per_rank,
            run.curriculum,
            epoch,
            config.train.seed,
            config.data.pairs_per_frame,
            run.info.rank,
            run.info.world_size,
            run.curriculum.mine_factor,
        )
        return stream.batches(start_video=first)


def _config_to_run(
    config: TCAEConfig, out: Path, overrides: list[str] | None
) -> tuple[TCAEConfig, dict | None]:
    """The config a run in ``out`` trains with and its ``last.ckpt`` if there is one to resume: on resume
    the checkpoint's config with ``overrides`` re-applied (e.g. ``train.epochs=30`` to extend); changing
    ``model.*`` is refused."""
    if not (out / LAST).is_file():
        return config, None
    resume = _read(out / LAST)
    stored = stored_tcae_config(resume["config"])
    new = apply_tcae_overrides(stored, overrides or [])
    if new.model != stored.model:
        raise UsageError(f"{out} was trained with model {stored.model}; a resumed run cannot change it")
    return new, resume


def _start_run(config: TCAEConfig, out: Path, source: Path, resume: dict | None, quiet: bool) -> _Run:
    """Device and ranks, the seeded model, its optimiser and precision, restored from ``resume`` if given."""
    device = resolve_device(config.train.device, "train.device")
    info = dist.init_distributed(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if config.train.batch_size % info.world_size:
        raise UsageError(
            f"train.batch_size={config.train.batch_size} is not divisible by {info.world_size} ranks"
        )
    torch.manual_seed(config.train.seed)
    model = TCAE(config.model.spec()).to(device)
    optimizer = make_optimizer(model.parameters(), config.optim)
    autocast, scaler = autocast_context(device, config.train.amp)
    progress = Progress(info.is_main and not quiet, command="facskit pretrain-tcae", unit="pairs")
    position = _Position()
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
        optimizer.load_state_dict(resume["optimizer"])
        if scaler.is_enabled() and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        set_rng_state(resume["rng"])
        position = _Position(
            resume["epoch"], resume["next_batch"], resume["step"], list(resume.get("history", []))
        )
        where = f"epoch {position.epoch + 1}, batch {position.next_batch} (step {position.step})"
        progress.note(f"resuming {out} at {where}")
    net: torch.nn.Module = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return _Run(
        config=config,
        out=out,
        source=source,
        info=info,
        device=device,
        model=model,
        net=net,
        optimizer=optimizer,
        autocast=autocast,
        scaler=scaler,
        curriculum=config.curriculum.curriculum(),
        weights=config.loss.weights(),
        progress=progress,
        position=position,
    )


def _open_pairs(run: _Run, cache: Any, source: Path) -> _Pairs:
    """The pair source of a prepared cache (opened here unless given) or of a video file / folder."""
    config, curriculum = run.config, run.curriculum
    if cache is None and not (source.is_dir() and _is_cache(source)):
        from facskit.io import iter_media

        videos = [m.path for m in iter_media([source])]
        pairs = _Pairs(steps_per_epoch=0, videos=videos, video_crop=config.data.crop or "track")
        run.progress.note(
            f"{source}: {len(videos)} videos, pairs from tracked faces, crop {pairs.video_crop}"
        )
        return pairs
    if cache is None:
        from facskit.data.cache import PreparedCache

        cache = PreparedCache(source)
    cache_crop = getattr(cache, "meta", {}).get("align", {}).get("crop", "aligned")
    if config.data.crop is not None and config.data.crop != cache_crop:
        raise UsageError(
            f"data.crop={config.data.crop} but {source} was prepared with --crop {cache_crop}; prepare "
            f"it again with --crop {config.data.crop} into another folder, or drop data.crop"
        )
    tracks = tracks_from_index(cache.index)
    images = CachePairDataset(cache, run.model.spec.input_size, preload=config.data.preload)
    difference = FrameDifference.of(images) if curriculum.mine_factor > 1 else None
    info = run.info
    seed = config.train.seed
    sampler = PairSampler(
        tracks, config.data.pairs_per_epoch, curriculum, seed, info.rank, info.world_size, difference
    )
    steps_per_epoch = sampler.batches_per_epoch(run.per_rank)
    if steps_per_epoch == 0:
        raise UsageError("data.pairs_per_epoch is smaller than one global batch")
    run.progress.note(
        f"{source}: {len(cache)} frames in {len(tracks)} tracks; {steps_per_epoch} steps per epoch"
    )
    return _Pairs(steps_per_epoch, images=images, sampler=sampler)


def _step_weights(config: TCAEConfig, weights: LossWeights, step: int) -> LossWeights:
    """The eq. 7 weights at ``step``: the twin terms (and the AU-field L1 with them, if held) ramped in
    from loss.twin_start_step, the gate L1 from loss.gate_start_step (facskit.tcae.losses.twin_ramp)."""
    loss = config.loss
    twin = twin_ramp(step, loss.twin_start_step, loss.twin_ramp_steps)
    gate = twin_ramp(step, loss.gate_start_step, loss.gate_ramp_steps)
    scaled = weights.with_twin_scale(twin, loss.sparsity_with_twins)
    return replace(scaled, gate=scaled.gate * gate)


def _train_step(
    run: _Run, source: torch.Tensor, target: torch.Tensor, window: tuple[float, float]
) -> dict[str, float]:
    """One optimiser step on a batch of pairs; the loss terms it logged."""
    source = source.to(run.device, non_blocking=True)
    target = target.to(run.device, non_blocking=True)
    with run.autocast():
        out = run.net(source, target)
    terms = tcae_loss_terms(out, source, target)  # fp32 losses
    loss, logged = reduce_terms(terms, _step_weights(run.config, run.weights, run.position.step), window)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.position.step += 1
    run.progress.advance()
    return {k: float(v) for k, v in logged.items()}


def _train_epoch(run: _Run, pairs: _Pairs, epoch: int, first: int) -> tuple[dict[str, float], int, int, bool]:
    """The steps of ``epoch`` from batch ``first``: the summed loss terms, the steps taken, the position to
    resume at, and whether train.max_steps stopped it."""
    config, position = run.config, run.position
    window = run.curriculum.window(epoch)
    sums = {name: 0.0 for name in (*LOSS_TERMS, "total")}
    count, next_position = 0, first
    run.model.train()
    for where, source, target in _prefetch(pairs.batches(run, epoch, first)):
        values = _train_step(run, source, target, window)
        for k, v in values.items():
            sums[k] += v
        count += 1
        # raw videos: the resume unit is the video, so "next" is the current video again
        next_position = where + 1 if pairs.is_cache else where
        if config.run.log_every_steps and position.step % config.run.log_every_steps == 0:
            run.progress.report(epoch, config.train.epochs, position.step, run.progress.total_steps, values)
            run.record(
                {"epoch": epoch, "step": position.step, "max_gap": run.curriculum.max_gap(epoch), **values}
            )
        every = config.run.checkpoint_every_steps
        if every and position.step % every == 0:
            run.save(epoch, next_position)
        if config.train.max_steps is not None and position.step >= config.train.max_steps:
            return sums, count, next_position, True
    return sums, count, next_position, False


def _epoch_summary(run: _Run, epoch: int, sums: dict[str, float], count: int) -> dict[str, Any]:
    """Mean loss terms of the epoch over every rank, with its curriculum."""
    totals = dist.all_reduce_sum(run.info, [sums[k] for k in sums] + [count], run.device)
    n = max(totals[-1], 1)
    summary: dict[str, Any] = {
        "epoch": epoch,
        "step": run.position.step,
        "max_gap": run.curriculum.max_gap(epoch),
        "window": list(run.curriculum.window(epoch)),
    }
    summary.update({f"mean_{k}": totals[i] / n for i, k in enumerate(sums)})
    return summary


def _total_steps(config: TCAEConfig, steps_per_epoch: int) -> int:
    """Optimiser steps the run will take (0: unknown, raw videos before their first epoch)."""
    total = steps_per_epoch * config.train.epochs if steps_per_epoch else 0
    if config.train.max_steps is not None:
        total = min(total, config.train.max_steps) if total else config.train.max_steps
    return total


def pretrain_tcae(
    config: TCAEConfig,
    source: str | Path | Any,
    out: str | Path,
    quiet: bool = False,
    overrides: list[str] | None = None,
) -> Path:
    """Train (or resume) a TCAE on a prepared cache or a folder of videos; returns ``out/last.ckpt``.

    ``source`` is a cache folder, a video file or folder, or an opened cache object (``len``, ``image(i)``,
    ``index`` with subject/sequence/frame columns).

    If ``out/last.ckpt`` exists the run resumes: the config and architecture come from the checkpoint,
    with ``overrides`` re-applied (e.g. ``train.epochs=30`` to extend); changing ``model.*`` is refused.
    """
    out = Path(out)
    cache = None if isinstance(source, str | Path) else source  # an already opened PreparedCache(-like)
    source = Path(source) if cache is None else Path(getattr(source, "path", "<in-memory cache>"))
    if cache is None and not source.exists():
        raise UsageError(f"{source}: no such file or folder")
    config, resume = _config_to_run(config, out, overrides)
    run = _start_run(config, out, source, resume, quiet)
    pairs = _open_pairs(run, cache, source)
    position = run.position
    run.progress.start(_total_steps(config, pairs.steps_per_epoch), position.step, config.train.batch_size)
    if run.info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_tcae_config(config, out / "config.yaml")
    try:
        for epoch in range(position.epoch, config.train.epochs):
            first = position.next_batch if epoch == position.epoch else 0
            sums, count, next_position, stopped = _train_epoch(run, pairs, epoch, first)
            summary = _epoch_summary(run, epoch, sums, count)
            if stopped:
                run.save(epoch, next_position if count else first)
                run.record({**summary, "stopped": "max_steps"})
                break
            position.history.append(summary)
            run.record(summary)
            if not pairs.steps_per_epoch and epoch == position.epoch and count:  # raw videos: now known
                run.progress.total_steps = position.step + count * (config.train.epochs - epoch - 1)
            run.save(epoch + 1, 0)
            run.save(epoch + 1, 0, name=f"epoch-{epoch + 1:03d}.ckpt", weights_only=True)
            run.progress.note(
                f"epoch {epoch + 1}/{config.train.epochs} done: max gap {run.curriculum.max_gap(epoch)}, "
                + " ".join(f"{k} {summary[f'mean_{k}']:.4f}" for k in sums)
            )
        dist.barrier(run.info)
    finally:
        dist.cleanup(run.info)
    history = position.history
    if not math.isfinite(history[-1]["mean_total"] if history else 0.0):
        raise UsageError("training diverged (loss is not finite); lower optim.lr")
    return out / LAST
