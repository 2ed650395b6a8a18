"""Training checkpoints: a facskit model checkpoint plus everything an exact resume needs.

``last.ckpt`` is a regular facskit checkpoint (``facskit.models.checkpoint``: spec, weights, loads with
``weights_only=True``, usable for analysis as is) whose ``extra`` also holds the resolved config and a
``resume`` record: optimiser, scheduler and gradient-scaler state, RNG states, and the position in the
run (epoch, step within the epoch, global step, running loss). Writes are atomic (temporary file then
``os.replace``), so a kill during a save leaves the previous checkpoint intact.

``best.ckpt`` is the same without the ``resume`` record (a third of the size: no Adam moments).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facskit.config import Config, config_from_dict, config_to_dict
from facskit.errors import CheckpointError
from facskit.io.atomic import atomic_write
from facskit.models.checkpoint import check_finite, read_torch_file, save_checkpoint

__all__ = [
    "RUNTIME_KEYS",
    "TrainingState",
    "load_init_weights",
    "merge_resume_config",
    "read_training_checkpoint",
    "rng_state",
    "save_atomically",
    "set_rng_state",
    "write_training_checkpoint",
]

# A plain dict keeps the checkpoint readable with weights_only=True; these are its keys.
TrainingState = dict[str, Any]

# What the loop reads back from a resume record (the "scaler" entry exists only with a gradient scaler).
RESUME_KEYS = (
    "epoch",
    "step_in_epoch",
    "global_step",
    "best",
    "loss_sum",
    "loss_steps",
    "optimizer",
    "scheduler",
    "rng",
)


def rng_state() -> dict[str, Any]:
    """Torch CPU and CUDA generator states (numpy and Python ``random`` are not used by the trainer:
    augmentation draws from generators seeded per sample)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomically(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` through :func:`facskit.io.atomic.atomic_write` (temporary file, fsync, ``os.replace``):
    a kill during the save leaves the previous checkpoint intact. For run states that are not an AU model
    checkpoint, such as TCAE pretraining's."""
    atomic_write(path, lambda tmp: torch.save(payload, tmp), durable=True, parents=True)


def _scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    # MultiStepLR keeps its milestones in a Counter (int keys) that plain-data checkpoints would turn into
    # strings; they come from the config anyway, so they are left out and restored from it.
    return {k: v for k, v in scheduler.state_dict().items() if k != "milestones"}


def write_training_checkpoint(
    path: Path,
    model: nn.Module,
    config: dict[str, Any],
    summary: dict[str, Any],
    resume: TrainingState | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> Path:
    """Save the (unwrapped) model with the config and training summary; with ``resume``, also the
    optimiser, scheduler, scaler and RNG states that make :func:`read_training_checkpoint` exact."""
    extra: dict[str, Any] = {"training": summary, "config": config}
    if resume is not None:
        record = dict(resume)
        if optimizer is not None:
            record["optimizer"] = optimizer.state_dict()
        if scheduler is not None:
            record["scheduler"] = _scheduler_state(scheduler)
        if scaler is not None and scaler.is_enabled():
            record["scaler"] = scaler.state_dict()
        record["rng"] = rng_state()
        extra["resume"] = record
    return save_checkpoint(path, model, extra=extra)  # type: ignore[arg-type]


def read_training_checkpoint(path: Path) -> dict[str, Any]:
    """The raw checkpoint dict (weights under ``state_dict``); CheckpointError if it cannot resume."""
    data = read_torch_file(path)
    extra = data.get("extra", {}) if isinstance(data, dict) else {}
    if not isinstance(extra, dict) or "resume" not in extra or "config" not in extra:
        raise CheckpointError(f"{path}: not a resumable training checkpoint (no resume record)")
    if not isinstance(extra["resume"], dict) or not isinstance(extra["config"], dict):
        raise CheckpointError(f"{path}: its resume record or config is not a mapping; the file is damaged")
    resume = extra["resume"]
    missing = [key for key in RESUME_KEYS if key not in resume]
    if missing:
        raise CheckpointError(f"{path}: its resume record lacks {', '.join(missing)}; the file is damaged")
    counters = ("epoch", "step_in_epoch", "global_step", "loss_steps")
    if any(isinstance(resume[k], bool) or not isinstance(resume[k], int) or resume[k] < 0 for k in counters):
        raise CheckpointError(f"{path}: its resume record's counters are not whole numbers >= 0")
    if not isinstance(data.get("state_dict"), dict):
        raise CheckpointError(f"{path}: no weights (state_dict) in the checkpoint")
    # Resuming from NaN weights would only train NaN further.
    check_finite(path, data["state_dict"])
    return data


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load an optimiser state whose per-parameter keys were stored as strings (plain-data checkpoint)."""
    fixed = dict(state)
    fixed["state"] = {int(k): v for k, v in state["state"].items()}
    optimizer.load_state_dict(fixed)


def restore_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any]) -> None:
    scheduler.load_state_dict({**state, "milestones": scheduler.state_dict().get("milestones")})


def load_init_weights(model: nn.Module, path: str | Path) -> tuple[int, int]:
    """Copy every parameter of the checkpoint at ``path`` whose name and shape match into ``model``.

    Accepts a facskit checkpoint, a raw state dict, or a dict holding one under ``state_dict``, ``model``
    or ``encoder`` (TCAE runs), with or without DataParallel's ``module.`` prefix; a trunk saved on its own
    matches under a ``trunk.`` prefix too. Returns (copied, total model tensors); copying nothing is an
    error, since it almost always means the wrong file.
    """
    data = read_torch_file(path)
    weights: Any = data
    if isinstance(data, dict):
        for key in ("state_dict", "model", "encoder"):
            if isinstance(data.get(key), dict):
                weights = data[key]
                break
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: no state dict found to initialise from")
    weights = {str(k).removeprefix("module."): v for k, v in weights.items() if isinstance(v, torch.Tensor)}
    own = model.state_dict()
    copied = {}
    for name, tensor in own.items():
        for candidate in (name, name.removeprefix("trunk.")):
            value = weights.get(candidate)
            if value is not None and value.shape == tensor.shape:
                copied[name] = value
                break
    if not copied:
        raise CheckpointError(f"{path}: no parameter matches the model by name and shape; nothing copied")
    check_finite(path, copied)
    model.load_state_dict(copied, strict=False)
    return len(copied), len(own)


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


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "overrides":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def merge_resume_config(saved: Config, requested: Config, log: Callable[[str], None]) -> Config:
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
