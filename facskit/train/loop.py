"""The training loop of the heatmap AU networks: MultiStepLR, exact resume, DDP, validation by ICC.

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

The loop is its steps, each a short function: the config to run (:func:`_resumed_config`), the frames
(:func:`_training_frames`), the network (:func:`_build_model`), then per epoch :func:`_train_epoch` (one
:func:`_train_step` per optimiser step: ``train.grad_accum`` micro-batches of the masked heatmap MSE of
:mod:`facskit.train.loss`) and :func:`_end_epoch` (schedule, validation, metrics, checkpoints). The
optimiser and mixed precision come from :mod:`facskit.train.optim`, shared with TCAE pretraining.
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
from facskit.errors import UsageError
from facskit.train import dist
from facskit.train.checkpointing import (
    load_init_weights,
    merge_resume_config,
    read_training_checkpoint,
    restore_optimizer,
    restore_scheduler,
    set_rng_state,
    write_training_checkpoint,
)
from facskit.train.dataset import FrameCache, StepSampler, make_loaders, split_frames
from facskit.train.loss import masked_mse
from facskit.train.optim import autocast_context, make_optimizer
from facskit.train.runlog import MetricsLog, Progress
from facskit.train.validate import validate

__all__ = ["TrainResult", "masked_mse", "train"]

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


def _set_bn_eval(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _resumed_config(
    run_dir: Path, config: Config, progress: Progress
) -> tuple[Config, dict[str, Any] | None]:
    """The config to train with and the checkpoint to resume from: ``run_dir/last.ckpt`` with its config
    (the runtime keys of ``config`` laid over it) if there is one, else ``config`` and None."""
    last_path = run_dir / "last.ckpt"
    if not last_path.exists():
        return config, None
    checkpoint = read_training_checkpoint(last_path)
    saved = config_from_dict(checkpoint["extra"]["config"])
    config = merge_resume_config(saved, config, progress.note)
    resume = checkpoint["extra"]["resume"]
    progress.note(
        f"resuming {run_dir} at epoch {resume['epoch'] + 1}, step {resume['step_in_epoch']} "
        f"(global step {resume['global_step']})"
    )
    return config, checkpoint


def _training_frames(
    config: Config, cache: FrameCache | None, progress: Progress
) -> tuple[FrameCache, np.ndarray, np.ndarray]:
    """The frames to train on (``data.cache`` unless given, then the extra caches joined to the training
    set) and the row numbers of the training and validation frames."""
    if cache is None:
        from facskit.data.cache import PreparedCache

        if not config.data.cache:
            raise UsageError("no prepared cache given: pass --data CACHE (or set data.cache)")
        cache = PreparedCache(config.data.cache)
    train_frames, val_frames = split_frames(cache, config)
    if config.data.extra_caches:
        from facskit.data.cache import ConcatCache, PreparedCache

        main = len(cache)
        cache = ConcatCache([cache, *(PreparedCache(path) for path in config.data.extra_caches)])
        train_frames = np.concatenate([train_frames, np.arange(main, len(cache))])
        extra = len(cache) - main
        progress.note(f"training on {len(train_frames)} frames, {extra} of them from extra caches")
    return cache, train_frames, val_frames


def _build_model(
    config: Config,
    cache: FrameCache,
    device: torch.device,
    info: dist.DistInfo,
    checkpoint: dict[str, Any] | None,
    progress: Progress,
) -> tuple[nn.Module, nn.Module]:
    """The seeded network (its weights from ``checkpoint`` or ``model.init_from`` if given) on ``device``,
    DDP-wrapped when distributed, and the unwrapped module that checkpoints save."""
    from facskit.models import create_model

    torch.manual_seed(config.train.seed)
    overrides = dict(config.model.overrides)
    overrides.setdefault("aus", tuple(cache.aus))  # predict what the data labels unless told otherwise
    if config.data.image_size is not None:
        overrides.setdefault("input_size", config.data.image_size)
    model = create_model(config.model.name, **overrides)
    if checkpoint is not None:
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
    return model, unwrapped


@dataclass
class _Position:
    """Where the run is and what it has accumulated: the resume record's counters."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float = float("-inf")
    loss_sum: float = 0.0  # summed step losses of this epoch (this rank)
    loss_steps: int = 0
    seconds_before: float = 0.0  # wall time of the sessions before a resume: metrics.csv counts the whole run


@dataclass
class _Run:
    """Everything one training run holds between its steps."""

    config: Config
    run_dir: Path
    device: torch.device
    info: dist.DistInfo
    model: nn.Module  # DDP-wrapped when distributed
    unwrapped: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    autocast: Callable[[], Any]
    scaler: torch.amp.GradScaler
    sampler: StepSampler
    train_loader: DataLoader
    val_loader: DataLoader | None
    cache: FrameCache
    train_frames: np.ndarray
    val_frames: np.ndarray
    progress: Progress
    log: MetricsLog
    position: _Position
    on_step: StepCallback | None

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.ckpt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.ckpt"

    def summary(self) -> dict[str, Any]:
        """The training summary every checkpoint carries."""
        data = self.config.data
        return {
            "epoch": self.position.epoch,
            "global_step": self.position.global_step,
            "train_frames": len(self.train_frames),
            "val_frames": len(self.val_frames),
            "split": data.split,
            "fold": data.fold,
            "cache": data.cache,
            "best_val_icc": self.position.best,
        }

    def save_last(self) -> None:
        """``last.ckpt`` with the resume record (rank 0 only)."""
        if not self.info.is_main:
            return
        p = self.position
        state = {
            "epoch": p.epoch,
            "step_in_epoch": p.step_in_epoch,
            "global_step": p.global_step,
            "best": p.best,
            "loss_sum": p.loss_sum,
            "loss_steps": p.loss_steps,
            "seconds": p.seconds_before + self.progress.elapsed(),
        }
        write_training_checkpoint(
            self.last_path,
            self.unwrapped,
            config_to_dict(self.config),
            self.summary(),
            state,
            self.optimizer,
            self.scheduler,
            self.scaler,
        )


def _restore(run: _Run, resume: dict[str, Any]) -> None:
    """Optimiser, scheduler, scaler, RNG and counters from a checkpoint's resume record."""
    restore_optimizer(run.optimizer, resume["optimizer"])
    restore_scheduler(run.scheduler, resume["scheduler"])
    if "scaler" in resume and run.scaler.is_enabled():
        run.scaler.load_state_dict(resume["scaler"])
    set_rng_state(resume["rng"])
    run.position = _Position(
        epoch=int(resume["epoch"]),
        step_in_epoch=int(resume["step_in_epoch"]),
        global_step=int(resume["global_step"]),
        best=float(resume["best"]),
        loss_sum=float(resume["loss_sum"]),
        loss_steps=int(resume["loss_steps"]),
        seconds_before=float(resume.get("seconds", 0.0)),  # checkpoints before it was recorded: 0
    )


def _train_step(run: _Run, micro_batches: Iterator[dict[str, Any]]) -> float:
    """One optimiser step over ``train.grad_accum`` micro-batches (gradients synchronised on the last);
    its loss."""
    accum, device, model = run.config.train.grad_accum, run.device, run.model
    step_loss = 0.0
    for micro in range(accum):
        batch = next(micro_batches)
        images = batch["image"].to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        targets = batch["heatmaps"].to(device, non_blocking=True)
        weights = batch["weights"].to(device, non_blocking=True)
        sync = run.info.enabled and micro < accum - 1
        with model.no_sync() if sync else contextlib.nullcontext():  # type: ignore[operator]
            with run.autocast():
                heatmaps = model(images)
            loss = masked_mse(heatmaps, targets, weights, run.config.train.foreground_weight) / accum
            run.scaler.scale(loss).backward()
        step_loss += float(loss.detach())
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    if not math.isfinite(step_loss):
        raise FloatingPointError(
            f"loss is {step_loss} at step {run.position.global_step + 1}; lower optim.lr"
        )
    return step_loss


def _train_epoch(run: _Run) -> bool:
    """The remaining steps of the current epoch, with their logs and mid-epoch checkpoints; True when
    train.max_steps stopped the run."""
    config, p = run.config, run.position
    steps_per_epoch = run.sampler.steps_per_epoch
    run.sampler.set_epoch(p.epoch, p.step_in_epoch)
    run.model.train()
    if config.model.freeze_bn:
        _set_bn_eval(run.model)
    micro_batches: Iterator[dict[str, Any]] = iter(run.train_loader)
    while p.step_in_epoch < steps_per_epoch:
        step_loss = _train_step(run, micro_batches)
        p.step_in_epoch += 1
        p.global_step += 1
        p.loss_sum += step_loss
        p.loss_steps += 1
        lr = run.optimizer.param_groups[0]["lr"]
        run.progress.step(p.epoch, config.train.epochs, p.step_in_epoch, steps_per_epoch, step_loss, lr)
        if config.log.every_steps and p.global_step % config.log.every_steps == 0:
            run.log.scalars(p.global_step, {"train/loss": step_loss, "train/lr": lr})
        every = config.checkpoint.every_steps
        if every and p.global_step % every == 0 and p.step_in_epoch < steps_per_epoch:
            run.save_last()
        if run.on_step is not None:
            run.on_step(p.global_step, step_loss)
        if config.train.max_steps is not None and p.global_step >= config.train.max_steps:
            return True
    return False


def _end_epoch(run: _Run) -> None:
    """The learning-rate schedule, validation, the metrics row and the checkpoints of a finished epoch."""
    config, p, info = run.config, run.position, run.info
    lr = run.optimizer.param_groups[0]["lr"]
    run.scheduler.step()
    train_loss = dist.all_reduce_sum(info, [p.loss_sum], run.device)[0] / max(
        p.loss_steps * info.world_size, 1
    )
    row: dict[str, Any] = {"epoch": p.epoch + 1, "step": p.global_step, "lr": lr}
    row["train_loss"] = train_loss
    if run.val_loader is not None:
        spec = run.unwrapped.spec
        row.update(
            validate(
                run.model, run.val_loader, run.autocast, run.device, info, run.cache, run.val_frames, spec
            )
        )
    row["seconds"] = p.seconds_before + run.progress.elapsed()
    score = float("nan")
    if config.checkpoint.best_metric == "icc":
        score = row.get("val_icc", score)
    if not math.isfinite(score):
        score = -row.get("val_loss", train_loss)
    improved = score > p.best
    if improved:
        p.best = score
    p.epoch += 1
    p.step_in_epoch = 0
    p.loss_sum, p.loss_steps = 0.0, 0
    run.log.epoch(row)
    run.progress.epoch_summary(row)
    run.save_last()
    if improved and info.is_main:
        write_training_checkpoint(run.best_path, run.unwrapped, config_to_dict(config), run.summary())


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
            instead, except for :data:`facskit.train.checkpointing.RUNTIME_KEYS`.
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
    config, checkpoint = _resumed_config(run_dir, config, progress)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    cache, train_frames, val_frames = _training_frames(config, cache, progress)
    model, unwrapped = _build_model(config, cache, device, info, checkpoint, progress)
    optimizer = make_optimizer(model.parameters(), config.optim)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.schedule.milestones, gamma=config.schedule.gamma
    )
    autocast, scaler = autocast_context(device, config.train.amp, config.train.bf16_cpu)
    sampler, train_loader, val_loader = make_loaders(
        config, cache, train_frames, val_frames, unwrapped.spec, device, info.world_size, info.rank
    )
    log = MetricsLog(run_dir, enabled=info.is_main, tensorboard=config.log.tensorboard, note=progress.note)
    run = _Run(
        config=config,
        run_dir=run_dir,
        device=device,
        info=info,
        model=model,
        unwrapped=unwrapped,
        optimizer=optimizer,
        scheduler=scheduler,
        autocast=autocast,
        scaler=scaler,
        sampler=sampler,
        train_loader=train_loader,
        val_loader=val_loader,
        cache=cache,
        train_frames=train_frames,
        val_frames=val_frames,
        progress=progress,
        log=log,
        position=_Position(),
        on_step=on_step,
    )
    if checkpoint is not None:
        _restore(run, checkpoint["extra"]["resume"])
    p = run.position
    log.start(first_epoch=p.epoch, global_step=p.global_step)
    total_steps = sampler.steps_per_epoch * config.train.epochs
    if config.train.max_steps is not None:
        total_steps = min(total_steps, config.train.max_steps)
    progress.start(total_steps=total_steps, done_steps=p.global_step, images_per_step=config.train.batch_size)
    try:
        while p.epoch < config.train.epochs:
            stopped = _train_epoch(run)
            if stopped and p.step_in_epoch < sampler.steps_per_epoch:
                run.save_last()
                break
            _end_epoch(run)
            if stopped:
                break
        result = TrainResult(
            run_dir=run_dir,
            last_checkpoint=run.last_path,
            best_checkpoint=run.best_path if run.best_path.exists() else None,
            global_step=p.global_step,
            history=log.history,
            best_metric=p.best,
        )
    finally:
        log.close()
    dist.barrier(info)  # not in `finally`: a rank that failed must not wait for the others forever
    return result
