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

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from facskit.device import resolve_device
from facskit.errors import CheckpointError, UsageError
from facskit.models.tcae import TCAE, TCAESpec
from facskit.tcae.config import (
    TCAEConfig,
    apply_tcae_overrides,
    save_tcae_config,
    tcae_config_from_dict,
    tcae_config_to_dict,
)
from facskit.tcae.losses import LOSS_TERMS, reduce_terms, tcae_loss_terms, twin_ramp
from facskit.tcae.pairs import (
    CachePairDataset,
    FrameDifference,
    LandmarkResidual,
    PairSampler,
    VideoPairStream,
    default_aligner,
    tracks_from_index,
)
from facskit.train.dist import all_reduce_sum, barrier, cleanup, init_distributed

__all__ = ["RUN_FORMAT", "checkpoint_path", "load_tcae", "pretrain_tcae"]

RUN_FORMAT = "facskit-tcae-run"
RUN_FORMAT_VERSION = 1
LAST = "last.ckpt"


# ---------------------------------------------------------------------------------------------- checkpoints


def _atomic_save(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (temporary file + ``os.replace``): an interrupted save keeps the previous file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        spec = TCAESpec(**data["spec"])
        with torch.device("meta"):  # shapes only: a hostile spec must not allocate before it is checked
            shell = TCAE(spec)
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


@dataclass
class _Progress:
    """Pairs/s and ETA over the whole run (steps done in this process only, so a resume is not skewed)."""

    total_steps: int
    pairs_per_step: int
    started: float = 0.0
    steps: int = 0

    def line(self, epoch: int, epochs: int, step: int, logged: dict[str, float]) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.steps * self.pairs_per_step / elapsed
        left = max(self.total_steps - step, 0) * self.pairs_per_step / max(rate, 1e-9)
        eta = (
            f"{int(left // 3600)}h{int(left % 3600 // 60):02d}m"
            if left >= 3600
            else f"{int(left // 60)}m{int(left % 60):02d}s"
        )
        terms = " ".join(f"{k} {v:.4f}" for k, v in logged.items())
        where = f"epoch {epoch + 1}/{epochs} step {step}/{self.total_steps}"
        return f"{where} | {rate:.1f} pairs/s | ETA {eta} | {terms}"


def _amp_context(device: torch.device, enabled: bool) -> tuple[Any, torch.amp.GradScaler | None]:
    """bf16 autocast where the GPU has it, else fp16 with a gradient scaler; nothing on CPU."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext, None
    if torch.cuda.is_bf16_supported():
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
    return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")


def _optimizer(config: TCAEConfig, params) -> torch.optim.Optimizer:
    o = config.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.RMSprop(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


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
    resume: dict[str, Any] | None = None
    if (out / LAST).is_file():
        resume = _read(out / LAST)
        stored = tcae_config_from_dict(resume["config"])
        new = apply_tcae_overrides(stored, overrides or [])
        if new.model != stored.model:
            raise UsageError(f"{out} was trained with model {stored.model}; a resumed run cannot change it")
        config = new

    device = resolve_device(config.train.device, "train.device")
    dist = init_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if config.train.batch_size % dist.world_size:
        raise UsageError(
            f"train.batch_size={config.train.batch_size} is not divisible by {dist.world_size} ranks"
        )
    per_rank = config.train.batch_size // dist.world_size
    log = (lambda text: None) if (quiet or not dist.is_main) else (lambda text: print(text, file=sys.stderr))

    torch.manual_seed(config.train.seed)
    spec = config.model.spec()
    model = TCAE(spec).to(device)
    optimizer = _optimizer(config, model.parameters())
    autocast, scaler = _amp_context(device, config.train.amp)
    curriculum = config.curriculum.curriculum()
    weights = config.loss.weights()

    start_epoch, start_batch, step = 0, 0, 0
    history: list[dict[str, Any]] = []
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
        optimizer.load_state_dict(resume["optimizer"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        torch.set_rng_state(resume["rng"]["torch"])
        start_epoch, start_batch, step = resume["epoch"], resume["next_batch"], resume["step"]
        history = list(resume.get("history", []))
        log(f"resuming {out} at epoch {start_epoch + 1}, batch {start_batch} (step {step})")
    net: torch.nn.Module = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    # --- data
    is_cache = cache is not None or (source.is_dir() and _is_cache(source))
    if is_cache:
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
        images = CachePairDataset(cache, spec.input_size, preload=config.data.preload)
        difference = None
        if curriculum.mine_factor > 1 and config.curriculum.mine_score == "landmarks":
            try:
                difference = LandmarkResidual.of_index(cache.index)
            except ValueError as error:
                raise UsageError(f"curriculum.mine_score=landmarks: {error}") from None
        elif curriculum.mine_factor > 1:
            difference = FrameDifference.of(images)
        sampler = PairSampler(
            tracks,
            config.data.pairs_per_epoch,
            curriculum,
            config.train.seed,
            dist.rank,
            dist.world_size,
            difference,
        )
        steps_per_epoch = sampler.batches_per_epoch(per_rank)
        if steps_per_epoch == 0:
            raise UsageError("data.pairs_per_epoch is smaller than one global batch")
        log(f"{source}: {len(cache)} frames in {len(tracks)} tracks; {steps_per_epoch} steps per epoch")
    else:
        from facskit.io import iter_media

        if curriculum.mine_factor > 1 and config.curriculum.mine_score == "landmarks":
            raise UsageError(
                "curriculum.mine_score=landmarks needs a prepared cache's landmark columns; raw videos are "
                "mined by frame difference (mine_score=frames), or prepare them first (facskit prepare)"
            )
        videos = [m.path for m in iter_media([source])]
        steps_per_epoch = 0  # unknown until the first epoch has been read
        video_crop = config.data.crop or "track"
        log(f"{source}: {len(videos)} videos, pairs from tracked faces, crop {video_crop}")
    total_steps = steps_per_epoch * config.train.epochs if steps_per_epoch else 0
    if config.train.max_steps is not None:
        total_steps = min(total_steps, config.train.max_steps) if total_steps else config.train.max_steps

    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_tcae_config(config, out / "config.yaml")

    def state(epoch: int, next_batch: int) -> dict[str, Any]:
        import facskit

        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "facskit_version": facskit.__version__,
            "spec": spec.to_dict(),
            "config": tcae_config_to_dict(config),
            "source": str(source),
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng": {"torch": torch.get_rng_state()},
            "epoch": epoch,
            "next_batch": next_batch,
            "step": step,
            "history": history,
        }

    def record(entry: dict[str, Any]) -> None:
        if dist.is_main:
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(entry) + "\n")

    progress = _Progress(
        total_steps=total_steps, pairs_per_step=config.train.batch_size, started=time.perf_counter()
    )
    stop = False
    try:
        for epoch in range(start_epoch, config.train.epochs):
            window = curriculum.window(epoch)
            first = start_batch if epoch == start_epoch else 0
            if is_cache:
                batches: Iterator[tuple[int, torch.Tensor, torch.Tensor]] = (
                    (first + k, *images.batch(pairs))
                    for k, pairs in enumerate(sampler.batches(epoch, per_rank, first))
                )
            else:
                stream = VideoPairStream(
                    videos,
                    lambda: default_aligner(
                        size=256,
                        every=config.data.detect_every,
                        crop=video_crop,
                        max_drift=config.data.max_drift,
                    ),
                    spec.input_size,
                    per_rank,
                    curriculum,
                    epoch,
                    config.train.seed,
                    config.data.pairs_per_frame,
                    dist.rank,
                    dist.world_size,
                    curriculum.mine_factor,
                )
                batches = stream.batches(start_video=first)
            sums = {name: 0.0 for name in (*LOSS_TERMS, "total")}
            count = 0
            model.train()
            for position, source_batch, target_batch in _prefetch(batches):
                source_batch = source_batch.to(device, non_blocking=True)
                target_batch = target_batch.to(device, non_blocking=True)
                # the pose decoder's share: 0 before loss.pose_start_step, then ramped to 1 (same schedule
                # shape as the twin terms; 1 throughout by default)
                pose_scale = twin_ramp(step, config.loss.pose_start_step, config.loss.pose_ramp_steps)
                au_scale = twin_ramp(step, config.loss.au_start_step, config.loss.au_ramp_steps)  # likewise
                with autocast():
                    out_batch = net(source_batch, target_batch, pose_scale=pose_scale, au_scale=au_scale)
                terms = tcae_loss_terms(out_batch, source_batch, target_batch)  # fp32 losses
                twin = twin_ramp(step, config.loss.twin_start_step, config.loss.twin_ramp_steps)
                gate = twin_ramp(step, config.loss.gate_start_step, config.loss.gate_ramp_steps)
                step_weights = weights.with_twin_scale(twin, config.loss.sparsity_with_twins)
                loss, logged = reduce_terms(
                    terms, replace(step_weights, gate=step_weights.gate * gate), window
                )
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if config.train.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                step += 1
                progress.steps += 1
                values = {k: float(v) for k, v in logged.items()}
                for k, v in values.items():
                    sums[k] += v
                count += 1
                # raw videos: the resume unit is the video, so "next" is the current video again
                next_position = position + 1 if is_cache else position
                every_log = config.run.log_every_steps
                if every_log and step % every_log == 0:
                    log(progress.line(epoch, config.train.epochs, step, values))
                    record({"epoch": epoch, "step": step, "max_gap": curriculum.max_gap(epoch), **values})
                every_ckpt = config.run.checkpoint_every_steps
                if every_ckpt and step % every_ckpt == 0 and dist.is_main:
                    _atomic_save(out / LAST, state(epoch, next_position))
                if config.train.max_steps is not None and step >= config.train.max_steps:
                    stop = True
                    break
            totals = all_reduce_sum(dist, [sums[k] for k in sums] + [count], device)
            n = max(totals[-1], 1)
            summary = {
                "epoch": epoch,
                "step": step,
                "max_gap": curriculum.max_gap(epoch),
                "window": list(window),
            }
            summary.update({f"mean_{k}": totals[i] / n for i, k in enumerate(sums)})
            if stop:
                if dist.is_main:
                    _atomic_save(out / LAST, state(epoch, next_position if count else first))
                record({**summary, "stopped": "max_steps"})
                break
            history.append(summary)
            record(summary)
            if not steps_per_epoch and epoch == start_epoch and count:
                progress.total_steps = step + count * (config.train.epochs - epoch - 1)  # video ETA
            if dist.is_main:
                _atomic_save(out / LAST, state(epoch + 1, 0))
                weights_only = {
                    k: v for k, v in state(epoch + 1, 0).items() if k not in ("optimizer", "scaler")
                }
                _atomic_save(out / f"epoch-{epoch + 1:03d}.ckpt", weights_only)
            log(
                f"epoch {epoch + 1}/{config.train.epochs} done: max gap {curriculum.max_gap(epoch)}, "
                + " ".join(f"{k} {summary[f'mean_{k}']:.4f}" for k in sums)
            )
        barrier(dist)
    finally:
        cleanup(dist)
    if not math.isfinite(history[-1]["mean_total"] if history else 0.0):
        raise UsageError("training diverged (loss is not finite); lower optim.lr")
    return out / LAST
