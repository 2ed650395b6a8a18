"""Where tensors run: one resolution of "auto" / "cpu" / "cuda[:N]" for training, TCAE and evaluation, and
the CPU's feature flags that decide whether bf16 is worth running (training's ``bf16_cpu: auto`` and the
analysis backend check both ask).

torch is imported inside :func:`resolve_device` only: the CPU-flag helpers are used by the ONNX Runtime
analysis path, which never imports torch (a Ray worker's start-up stays light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from facskit.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

# CPU flags of hardware bf16 matrix kernels; without them bf16 is emulated and slower than fp32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; an explicit CUDA device without CUDA is a usage error
    naming ``option`` (the setting the user wrote, e.g. ``train.device``)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{option}={name} but CUDA is not available")
    return device


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (``/proc/cpuinfo``; empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    """``model name`` from ``/proc/cpuinfo`` (benchmarks record it with every figure)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    """True where bf16 matrix kernels exist in hardware; elsewhere bf16 is emulated and slower than fp32."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_FLAGS)
