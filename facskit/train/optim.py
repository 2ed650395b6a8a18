"""The optimiser and the mixed precision every facskit trainer steps with (``facskit train`` and TCAE
pretraining), built from the shared :class:`facskit.config.OptimConfig` and the ``amp`` switches."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from facskit.config import OptimConfig

__all__ = ["autocast_context", "bf16_on_cpu", "make_optimizer"]


def make_optimizer(parameters: Iterable[nn.Parameter], optim: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser ``optim.name`` over the parameters that require a gradient (frozen ones are left out,
    so their Adam moments are never allocated)."""
    params, o = [p for p in parameters if p.requires_grad], optim
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)
    return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)


def bf16_on_cpu(setting: bool | str) -> bool:
    """Whether ``train.bf16_cpu`` asks for bf16 autocast on CPU (``"auto"``: where it has native bf16)."""
    if setting == "auto":
        from facskit.device import has_fast_bf16

        return has_fast_bf16()
    return bool(setting)


def autocast_context(
    device: torch.device, amp: bool, bf16_cpu: bool | str = False
) -> tuple[Callable[[], Any], torch.amp.GradScaler]:
    """Autocast context factory and gradient scaler: bf16 (or fp16 + scaler where the GPU lacks bf16) on
    CUDA when ``amp``, bf16 on CPU when ``bf16_cpu`` (``"auto"``: where the CPU has native bf16), otherwise
    plain fp32. The scaler is always returned, disabled unless fp16 needs it, so a step is written once:
    ``scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()``."""
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        return (lambda: torch.autocast("cuda", dtype=dtype)), scaler
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    if device.type == "cpu" and bf16_on_cpu(bf16_cpu):
        return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)), scaler
    return contextlib.nullcontext, scaler
