"""Which network a :class:`~facskit.analyze.detector.Detector` runs, and where: ``"default"``, a checkpoint,
an ``.onnx`` file, a registry name or a model object, resolved to a :class:`~facskit.runtime.backends.Backend`
and the model-card facts that go into every result's ``.attrs``; ``auto`` devices made concrete.

Kept apart from the Detector because it is the one place that decides whether torch is imported at all:
an ``.onnx`` file, or a checkpoint with ONNX files shipped beside it, runs on ONNX Runtime alone.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facskit.errors import CheckpointError, UsageError
from facskit.runtime.backends import Backend, BackendName, OnnxBackend, Precision
from facskit.runtime.check import select_backend
from facskit.runtime.shipped import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from facskit.models.spec import AUModel

DEFAULT_MODEL = "default"
# Where trained default weights are installed (package data); "default" resolves to this file.
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "default.ckpt"


def resolve_model(
    model: str | os.PathLike[str] | AUModel,
    device: str,
    backend: BackendName,
    precision: Precision = "fp32",
    quiet: bool = False,
) -> tuple[Backend, dict]:
    """A backend for ``model`` plus the model card facts that go into ``.attrs``.

    ``model`` is ``"default"`` (trained weights shipped with facskit), a checkpoint path, an exported
    ``.onnx`` file, a registry name (fresh, untrained weights: useful for testing the wiring only, hence a
    warning) or a model object.

    A model object implies torch, so ``AUModel`` is imported only for one: an ``.onnx`` file runs on ONNX
    Runtime without torch being imported at all (what keeps a Ray worker's start-up light).
    """
    card: dict[str, Any] = {}
    if not isinstance(model, str | os.PathLike):
        from facskit.models.spec import AUModel

        if not isinstance(model, AUModel):
            raise UsageError(f"model must be a name, a path or an AUModel, not {type(model).__name__}")
        card.update(source="<object>", trained=None)
        net: AUModel | None = model
    else:
        text = os.fspath(model)
        if text == DEFAULT_MODEL:
            if not DEFAULT_WEIGHTS.is_file():
                raise CheckpointError(
                    f"no trained default model is installed ({DEFAULT_WEIGHTS} is missing); pass a "
                    "checkpoint with --model PATH (Detector(model=PATH)) or train one with `facskit train`"
                )
            text = str(DEFAULT_WEIGHTS)
        if text.lower().endswith(".onnx"):
            if not Path(text).is_file():
                raise CheckpointError(f"no such ONNX file: {text}")
            onnx_backend = OnnxBackend(text, device=device)
            card.update(source=text, trained=None, backend="onnx", hash=sha256_file(Path(text))[:16])
            return onnx_backend, card
        if Path(text).is_file():
            from facskit.runtime.shipped import shipped_backend

            # ONNX files exported beside this very checkpoint (the shipped default has them): no torch.
            shipped = shipped_backend(text, device, backend, precision)
            if shipped is not None:
                card.update(source=text, trained=True, **shipped[1].card, hash=shipped[1].weights_hash)
                return shipped[0], card
        from facskit.models.registry import create_model, list_models

        if Path(text).is_file():
            net, info = _load_checkpoint(text)
            card.update(
                source=text,
                trained=True,
                checkpoint_facskit_version=info.get("facskit_version"),
                training=info.get("training") or {},
            )
        elif text in list_models():
            warnings.warn(
                f"model {text!r} is a registry name: its weights are freshly initialised (untrained), so the "
                "AU values are meaningless; pass a trained checkpoint for real analysis",
                stacklevel=3,
            )
            net = create_model(text)
            card.update(source=text, trained=False)
        else:
            raise CheckpointError(
                f"{text!r} is neither 'default', an existing checkpoint/.onnx file nor a model name "
                f"({', '.join(list_models())})"
            )
    assert net is not None
    from facskit.models.checkpoint import weights_hash

    card["hash"] = weights_hash(net)
    progress = (lambda _: None) if quiet else None
    return select_backend(net, card["hash"], device, backend, precision, progress), card


def _load_checkpoint(path: str) -> tuple[AUModel, dict[str, Any]]:
    """:func:`facskit.models.checkpoint.load_checkpoint`, its advice fitted to analysis: a file of pickled
    Python objects is never unpickled here (that would run code from the file), so the hint names the
    command that converts the one such file facskit knows, not an ``allow_pickle`` analysis does not have."""
    from facskit.models.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path)
    except CheckpointError as error:
        if "pickle" not in str(error).lower():
            raise
        raise CheckpointError(
            f"{path}: holds pickled Python objects, which analysis never loads (unpickling runs code from "
            "the file); for the BMVC'18 AUdetector.pth.tar run `facskit import-weights` (it has "
            "--allow-pickle) and pass the checkpoint it writes"
        ) from None


def concrete_device(device: str, model: Any = None) -> str:
    """``device`` with ``"auto"`` made concrete: ``"cuda"`` where the model can run there, else ``"cpu"``.

    For an ``.onnx`` file that is ONNX Runtime's CUDA provider, asked without importing torch (what keeps a
    Ray worker's start-up light); for anything else, torch's CUDA. Other names are returned unchanged.
    """
    if device != "auto":
        return device
    if isinstance(model, str | os.PathLike) and os.fspath(model).lower().endswith(".onnx"):
        try:
            import onnxruntime
        except ImportError:  # OnnxBackend names the missing extra
            return "cpu"
        return "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
    if not gpu_driver_present():
        return "cpu"  # torch.cuda.is_available() would say the same after a 1.3 s import
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu_driver_present() -> bool:
    """Whether an NVIDIA (CUDA) or AMD (ROCm) kernel driver is loaded (``/proc``, ``/dev``): without one
    neither torch nor ONNX Runtime can see a GPU, so ``auto`` is the CPU without importing either."""
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd"))


__all__ = ["DEFAULT_MODEL", "DEFAULT_WEIGHTS", "concrete_device", "gpu_driver_present", "resolve_model"]
