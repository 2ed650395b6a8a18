"""The training loop: masked heatmap MSE, Adam + MultiStepLR, exact resume, DDP, validation by ICC.

One call, :func:`train`, runs a whole experiment from a :class:`facskit.config.Config` into a run folder::

    config.yaml     the resolved config (also inside every checkpoint)
    metrics.csv     one row per epoch: losses, learning rate, validation ICC/MAE/PCC/F1 (mean and per AU)
                    and ``seconds``, the run's wall time so far (earlier sessions of a resumed run included)
    last.ckpt       written every epoch and every ``checkpoint.every_steps`` steps; resumable
    best.ckpt       the epoch with the best validation mean ICC(3,1) (model and summary only)
    tb/             TensorBoard event files

Running :func:`train` again on a folder holding ``last.ckpt`` resumes it: the architecture and the
optimisation come from the checkpoint (not from the new config), the sampler restarts at the saved step
within the epoch, and on CPU the final weights are bitwise identical to an uninterrupted run.

Loss (both papers use MSE on heatmaps): ``sum(w * (pred - target)^2) / (n * P * m * m)`` over a
micro-batch of ``n`` frames, ``P`` maps of ``m x m``, with ``w = 0`` on the maps of unknown labels. The
denominator counts masked maps too, so it is the same fixed number on every rank and micro-batch, which
keeps accumulation and DDP averaging exactly equal to one large batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from facskit.config import Config, config_from_dict, config_to_dict, save_config
from facskit.device import resolve_device
from facskit.errors import DatasetError, UsageError
from facskit.metrics import au_table
from facskit.train import dist
from facskit.train.checkpointing import (
    load_init_weights,
    read_training_checkpoint,
    restore_optimizer,
    restore_scheduler,
    set_rng_state,
    write_training_checkpoint,
)
from facskit.train.dataset import FrameCache, HeatmapDataset, StepSampler, shard_positions
from facskit.train.runlog import MetricsLog, Progress

__all__ = ["TrainResult", "masked_mse", "train"]

# Keys a resumed run takes from the new config rather than the checkpoint: where things are and how fast
# they go, never what is being optimised. Extending train.epochs or max_steps continues a finished run.
RUNTIME_KEYS = (
    "data.cache",
    "train.workers",
    "train.prefetch",
    "train.device",
    "train.epochs",
    "train.max_steps",
    "train.eval_batch_size",
    "checkpoint.every_steps",
    "log.every_steps",
    "log.tensorboard",
)

StepCallback = Callable[[int, float], None]


@dataclass
class TrainResult:
    """What a finished (or max_steps-stopped) run leaves: paths, per-epoch history, the best metric."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    global_step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float = float("-inf")


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


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "overrides":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _merge_resume_config(saved: Config, requested: Config, log: Callable[[str], None]) -> Config:
    """The checkpoint's config with the runtime keys of the requested one; other differences are reported
    and ignored (on resume the architecture and optimisation come from the checkpoint)."""
    saved_flat, requested_flat = _flatten(config_to_dict(saved)), _flatten(config_to_dict(requested))
    merged = config_to_dict(saved)
    ignored = []
    for key, value in requested_flat.items():
        if saved_flat.get(key) == value:
            continue
        if key in RUNTIME_KEYS:
            section, name = key.split(".")
            merged[section][name] = value
        else:
            ignored.append(f"{key}={value!r} (checkpoint: {saved_flat.get(key)!r})")
    if ignored:
        log("resuming: the checkpoint's settings win over " + "; ".join(ignored))
    return config_from_dict(merged)


def _split_frames(cache: FrameCache, config: Config) -> tuple[np.ndarray, np.ndarray]:
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
    return _evenly_spaced(train, d.max_train_frames), _evenly_spaced(val, d.max_val_frames)


def _evenly_spaced(frames: np.ndarray, limit: int | None) -> np.ndarray:
    """At most ``limit`` frames spread evenly over the (subject-ordered) list, deterministically.

    A prefix would keep only the first subjects; an even stride keeps every subject and sequence, which
    is what a frame budget is meant to preserve.
    """
    if limit is None or len(frames) <= limit:
        return frames
    return frames[np.linspace(0, len(frames) - 1, limit).round().astype(np.int64)]


def _subjects_of(cache: FrameCache, frames: np.ndarray) -> np.ndarray | None:
    index = getattr(cache, "index", None)
    if index is None or "subject" not in index:
        return None
    return index["subject"].astype(str).to_numpy()[frames]


def _set_bn_eval(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _loader(dataset: HeatmapDataset, config: Config, device: torch.device, **kwargs: Any) -> DataLoader:
    workers = config.train.workers
    options: dict[str, Any] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        options.update(persistent_workers=True, prefetch_factor=config.train.prefetch)
    return DataLoader(dataset, **options, **kwargs)


def _make_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    o = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)
    return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)


def _bf16_on_cpu(setting: bool | str) -> bool:
    if setting == "auto":
        from facskit.device import has_fast_bf16

        return has_fast_bf16()
    return bool(setting)


def _autocast(device: torch.device, config: Config) -> tuple[Callable[[], Any], torch.amp.GradScaler]:
    """Autocast context factory and gradient scaler: bf16 (or fp16 + scaler) on CUDA when train.amp,
    bf16 on CPU when train.bf16_cpu (``"auto"``: where the CPU has native bf16), otherwise plain fp32."""
    if device.type == "cuda" and config.train.amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        return (lambda: torch.autocast("cuda", dtype=dtype)), scaler
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    if device.type == "cpu" and _bf16_on_cpu(config.train.bf16_cpu):
        return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)), scaler
    return contextlib.nullcontext, scaler


def train(
    config: Config,
    run_dir: str | Path,
    *,
    cache: FrameCache | None = None,
    quiet: bool = False,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train (or resume) the run in ``run_dir``; see the module docstring for the files it writes.

    Args:
        config: the requested config; when ``run_dir/last.ckpt`` exists the checkpoint's config is used
            instead, except for :data:`RUNTIME_KEYS`.
        cache: frames to train on; default ``facskit.data.PreparedCache(config.data.cache)``.
        quiet: no progress output (errors still raise).
        on_step: called as ``on_step(global_step, loss)`` after every optimiser step and its checkpoint
            (tests raise from it to simulate a kill).
    """
    run_dir = Path(run_dir)
    device = resolve_device(config.train.device, "train.device")
    info = dist.init_distributed(device)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
    progress = Progress(enabled=info.is_main and not quiet)

    last_path, best_path = run_dir / "last.ckpt", run_dir / "best.ckpt"
    resume: dict[str, Any] | None = None
    if last_path.exists():
        checkpoint = read_training_checkpoint(last_path)
        saved = config_from_dict(checkpoint["extra"]["config"])
        config = _merge_resume_config(saved, config, progress.note)
        resume = checkpoint["extra"]["resume"]
        progress.note(
            f"resuming {run_dir} at epoch {resume['epoch'] + 1}, step {resume['step_in_epoch']} "
            f"(global step {resume['global_step']})"
        )
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")

    if cache is None:
        from facskit.data.cache import PreparedCache

        if not config.data.cache:
            raise UsageError("no prepared cache given: pass --data CACHE (or set data.cache)")
        cache = PreparedCache(config.data.cache)
    train_frames, val_frames = _split_frames(cache, config)
    if config.data.extra_caches:
        from facskit.data.cache import ConcatCache, PreparedCache

        main = len(cache)
        cache = ConcatCache([cache, *(PreparedCache(path) for path in config.data.extra_caches)])
        train_frames = np.concatenate([train_frames, np.arange(main, len(cache))])
        extra = len(cache) - main
        progress.note(f"training on {len(train_frames)} frames, {extra} of them from extra caches")

    # --- model ---------------------------------------------------------------------------------------
    from facskit.models import create_model

    torch.manual_seed(config.train.seed)
    overrides = dict(config.model.overrides)
    overrides.setdefault("aus", tuple(cache.aus))  # predict what the data labels unless told otherwise
    if config.data.image_size is not None:
        overrides.setdefault("input_size", config.data.image_size)
    model = create_model(config.model.name, **overrides)
    spec = model.spec
    if resume is not None:
        model.load_state_dict(checkpoint["state_dict"])
    elif config.model.init_from:
        copied, total = load_init_weights(model, config.model.init_from)
        progress.note(f"initialised {copied} of {total} tensors from {config.model.init_from}")
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    if config.model.sync_bn and info.enabled:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            progress.note("model.sync_bn needs CUDA; BatchNorm statistics stay per rank on CPU")
    model.to(device)
    unwrapped: nn.Module = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    optimizer = _make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.schedule.milestones, gamma=config.schedule.gamma
    )
    autocast, scaler = _autocast(device, config)

    # --- data ----------------------------------------------------------------------------------------
    accum, world = config.train.grad_accum, info.world_size
    foreground_weight = config.train.foreground_weight
    try:
        sampler = StepSampler(
            len(train_frames), config.train.batch_size, accum, world, info.rank, seed=config.train.seed
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    train_set = HeatmapDataset(cache, train_frames, spec, config.augment, seed=config.train.seed)
    train_loader = _loader(train_set, config, device, batch_sampler=sampler)
    val_loader = None
    if len(val_frames):
        shard = val_frames[shard_positions(len(val_frames), world, info.rank)]
        val_set = HeatmapDataset(cache, shard, spec, augment=None, seed=config.train.seed)
        val_batch = config.train.eval_batch_size or sampler.local
        val_loader = _loader(val_set, config, device, batch_size=val_batch, shuffle=False)

    # --- state ---------------------------------------------------------------------------------------
    epoch, step_in_epoch, global_step = 0, 0, 0
    loss_sum, loss_steps, best = 0.0, 0, float("-inf")
    seconds_before = 0.0  # wall time of the sessions before a resume, so metrics.csv counts the whole run
    if resume is not None:
        restore_optimizer(optimizer, resume["optimizer"])
        restore_scheduler(scheduler, resume["scheduler"])
        if "scaler" in resume and scaler.is_enabled():
            scaler.load_state_dict(resume["scaler"])
        set_rng_state(resume["rng"])
        epoch, step_in_epoch = int(resume["epoch"]), int(resume["step_in_epoch"])
        global_step, best = int(resume["global_step"]), float(resume["best"])
        loss_sum, loss_steps = float(resume["loss_sum"]), int(resume["loss_steps"])
        seconds_before = float(resume.get("seconds", 0.0))  # checkpoints before it was recorded: 0
    log = MetricsLog(run_dir, enabled=info.is_main, tensorboard=config.log.tensorboard, note=progress.note)
    log.start(first_epoch=epoch, global_step=global_step)
    config_dict = config_to_dict(config)
    steps_per_epoch = sampler.steps_per_epoch
    total_steps = steps_per_epoch * config.train.epochs
    if config.train.max_steps is not None:
        total_steps = min(total_steps, config.train.max_steps)
    progress.start(total_steps=total_steps, done_steps=global_step, images_per_step=config.train.batch_size)

    def summary() -> dict[str, Any]:
        return {
            "epoch": epoch,
            "global_step": global_step,
            "train_frames": len(train_frames),
            "val_frames": len(val_frames),
            "split": config.data.split,
            "fold": config.data.fold,
            "cache": config.data.cache,
            "best_val_icc": best,
        }

    def save_last() -> None:
        if not info.is_main:
            return
        state = {
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": global_step,
            "best": best,
            "loss_sum": loss_sum,
            "loss_steps": loss_steps,
            "seconds": seconds_before + progress.elapsed(),
        }
        write_training_checkpoint(
            last_path, unwrapped, config_dict, summary(), state, optimizer, scheduler, scaler
        )

    stopped = False
    lr = optimizer.param_groups[0]["lr"]
    try:
        while epoch < config.train.epochs and not stopped:
            sampler.set_epoch(epoch, step_in_epoch)
            model.train()
            if config.model.freeze_bn:
                _set_bn_eval(model)
            micro_batches: Iterator[dict[str, Any]] = iter(train_loader)
            while step_in_epoch < steps_per_epoch:
                step_loss = 0.0
                for micro in range(accum):
                    batch = next(micro_batches)
                    images = batch["image"].to(device, non_blocking=True)
                    if device.type == "cuda":
                        images = images.contiguous(memory_format=torch.channels_last)
                    targets = batch["heatmaps"].to(device, non_blocking=True)
                    weights = batch["weights"].to(device, non_blocking=True)
                    sync = info.enabled and micro < accum - 1
                    with model.no_sync() if sync else contextlib.nullcontext():  # type: ignore[operator]
                        with autocast():
                            heatmaps = model(images)
                        loss = masked_mse(heatmaps, targets, weights, foreground_weight) / accum
                        scaler.scale(loss).backward()
                    step_loss += float(loss.detach())
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if not math.isfinite(step_loss):
                    raise FloatingPointError(f"loss is {step_loss} at step {global_step + 1}; lower optim.lr")
                step_in_epoch += 1
                global_step += 1
                loss_sum += step_loss
                loss_steps += 1
                lr = optimizer.param_groups[0]["lr"]
                progress.step(epoch, config.train.epochs, step_in_epoch, steps_per_epoch, step_loss, lr)
                if config.log.every_steps and global_step % config.log.every_steps == 0:
                    log.scalars(global_step, {"train/loss": step_loss, "train/lr": lr})
                every = config.checkpoint.every_steps
                if every and global_step % every == 0 and step_in_epoch < steps_per_epoch:
                    save_last()
                if on_step is not None:
                    on_step(global_step, step_loss)
                if config.train.max_steps is not None and global_step >= config.train.max_steps:
                    stopped = True
                    break
            if stopped and step_in_epoch < steps_per_epoch:
                save_last()
                break
            # --- end of epoch: schedule, validation, metrics, checkpoints ----------------------------
            del micro_batches
            scheduler.step()
            train_loss = dist.all_reduce_sum(info, [loss_sum], device)[0] / max(loss_steps * world, 1)
            row: dict[str, Any] = {"epoch": epoch + 1, "step": global_step, "lr": lr}
            row["train_loss"] = train_loss
            if val_loader is not None:
                row.update(_validate(model, val_loader, autocast, device, info, cache, val_frames, spec))
            row["seconds"] = seconds_before + progress.elapsed()
            score = float("nan")
            if config.checkpoint.best_metric == "icc":
                score = row.get("val_icc", score)
            if not math.isfinite(score):
                score = -row.get("val_loss", train_loss)
            improved = score > best
            if improved:
                best = score
            epoch += 1
            step_in_epoch = 0
            loss_sum, loss_steps = 0.0, 0
            log.epoch(row)
            progress.epoch_summary(row)
            save_last()
            if improved and info.is_main:
                write_training_checkpoint(best_path, unwrapped, config_dict, summary())
        result = TrainResult(
            run_dir=run_dir,
            last_checkpoint=last_path,
            best_checkpoint=best_path if best_path.exists() else None,
            global_step=global_step,
            history=log.history,
            best_metric=best,
        )
    finally:
        log.close()
    dist.barrier(info)  # not in `finally`: a rank that failed must not wait for the others forever
    return result


@torch.no_grad()
def _validate(
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
