"""Where tensors run: one resolution of "auto" / "cpu" / "cuda[:N]" for training, TCAE and evaluation."""

from __future__ import annotations

import torch

from facskit.errors import UsageError


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; an explicit CUDA device without CUDA is a usage error
    naming ``option`` (the setting the user wrote, e.g. ``train.device``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{option}={name} but CUDA is not available")
    return device
