"""Where the network runs: a small ``Backend`` interface and its torch and ONNX Runtime implementations.

A backend turns a batch of aligned uint8 crops into heatmaps. Pre-processing comes from the model's
``ModelSpec`` (:func:`facskit.models.spec.preprocess`; its torch-free twin ``preprocess_numpy`` for ONNX
Runtime) and the readout is done by the caller, so every backend feeds and reads the network identically and
only the runtime differs:

* ``torch`` ``fp32``: PyTorch eager, the reference every other path is checked against.
* ``torch`` ``bf16``: channels_last + bf16 autocast on a CPU with ``avx512_bf16``/``amx_bf16`` (about 2x on
  the Hourglass, DESIGN.md section 6); on CUDA, automatic mixed precision.
* ``onnx`` ``fp32``: ONNX Runtime on the cached export (:mod:`facskit.runtime.export`).
* ``onnx`` ``int8``: ONNX Runtime on a statically quantised copy calibrated on real aligned faces
  (:mod:`facskit.runtime.quantize`).

Which of them runs when the user says ``auto`` is decided by :mod:`facskit.runtime.check`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from facskit.errors import CheckpointError, UsageError, first_line

if TYPE_CHECKING:  # pragma: no cover
    from facskit.models.spec import AUModel, ModelSpec

BackendName = Literal["auto", "torch", "onnx"]
BACKENDS: tuple[BackendName, ...] = ("auto", "torch", "onnx")
Precision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "int8")
# (backend, precision) pairs that exist, fastest-first in the usual order (the measured order decides).
CANDIDATES: tuple[tuple[str, str], ...] = (
    ("onnx", "int8"),
    ("torch", "bf16"),
    ("onnx", "fp32"),
    ("torch", "fp32"),
)


@runtime_checkable
class Backend(Protocol):
    """Runs the AU network on aligned crops."""

    spec: ModelSpec
    name: str
    precision: str

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """``crops`` (B, S, S, 3) uint8 RGB aligned faces -> heatmaps (B, P, h, w) float32."""
        ...


class TorchBackend:
    """PyTorch inference (eval mode, no grad) on ``device``, in fp32 or bf16 (CPU: channels_last + autocast;
    CUDA: autocast, i.e. AMP)."""

    name = "torch"
    # How this backend was chosen (pinned, or the check's verdict with its measured AU error): recorded in
    # run.json and every result's attrs. Set by whoever picks the backend.
    check: dict | None = None

    def __init__(self, model: AUModel, device: str = "cpu", precision: str = "fp32") -> None:
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but PyTorch sees no CUDA device; use --device cpu")
        if precision not in ("fp32", "bf16"):
            raise UsageError(f"the torch backend runs fp32 or bf16, not {precision!r} (int8 runs on onnx)")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.to(self.device).eval()
        self.spec = model.spec
        if precision == "bf16":
            self.model = self.model.to(memory_format=torch.channels_last)

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        import torch

        from facskit.models.spec import preprocess

        with torch.inference_mode():
            # uint8 to the device, then normalise there: on a GPU the host-side float work capped the stage
            # at 2000-3300 frames/s (benchmarks/results/gpu_h100.md); on the CPU it is the same work.
            x = preprocess(torch.as_tensor(crops).to(self.device), self.spec)  # (B, 3, S, S)
            if self.precision == "bf16":
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    maps = self.model(x)  # (B, P, h, w)
            else:
                maps = self.model(x)  # (B, P, h, w)
        return maps.float().contiguous().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime inference on a model written by :func:`facskit.runtime.export.export_onnx` (spec
    embedded), or its int8 copy from :func:`facskit.runtime.quantize.quantize_onnx`.

    It imports neither torch nor the ``onnx`` package: the spec comes from the session's metadata and the
    input from :func:`facskit.models.spec.preprocess_numpy`. Importing torch costs a process ~0.9 s and
    ~200 MB, ``onnx`` ~0.6 s (its ml_dtypes), and every Ray worker used to pay both before its first task.
    """

    name = "onnx"
    check: dict | None = None  # as TorchBackend.check

    def __init__(
        self, path: Path | str, device: str = "cpu", threads: int | None = None, precision: str = "fp32"
    ) -> None:
        from facskit.runtime.export import spec_from_metadata

        try:
            import onnxruntime as ort
        except ImportError:
            raise UsageError("the onnx backend needs onnxruntime: pip install 'facskit[onnx]'") from None
        self.path = Path(path)
        self.precision = precision
        _check_onnx_file(self.path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # ORT's workers spin between runs by default; in the pipelined engine that spinning takes the core
        # the face front end needs (measured: lite int8 end to end 36 -> 56 fps with spinning off, 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UsageError("--device cuda with --backend onnx needs onnxruntime-gpu")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as error:  # noqa: BLE001 - ORT's errors share no base class below Exception
            raise CheckpointError(f"{self.path}: not a readable ONNX file ({first_line(error)})") from None
        try:
            self.spec = spec_from_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        except (ValueError, KeyError, TypeError) as error:  # a spec that is not JSON or not a spec
            raise CheckpointError(f"{self.path}: invalid facskit model spec ({first_line(error)})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise CheckpointError(f"{self.path}: takes {len(inputs)} inputs; a facskit export takes 1")
        self.input_name = inputs[0].name

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        from facskit.models.spec import preprocess_numpy

        x = preprocess_numpy(crops, self.spec)  # (B, 3, S, S)
        (maps,) = self.session.run(None, {self.input_name: x})
        return np.asarray(maps, dtype=np.float32)


def _check_onnx_file(path: Path) -> None:
    """One line naming the file for what ONNX Runtime would report at length (or not at all: an empty file
    reads as a model with "no graph")."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not an ONNX model")


def create_backend(
    name: str, model: AUModel, device: str = "cpu", precision: str = "fp32", weights_hash: str | None = None
) -> Backend:
    """The backend ``name`` at ``precision`` for ``model``. ``"onnx"`` exports the model to a cached ONNX file
    first (keyed by a hash of its weights), ``int8`` quantises that once more; the first run pays for both."""
    if name == "torch":
        return TorchBackend(model, device, precision)
    if name == "onnx":
        from facskit.runtime.export import cached_onnx_path

        if weights_hash is None:
            from facskit.models.checkpoint import weights_hash as hash_weights

            weights_hash = hash_weights(model)
        if precision == "int8":
            if device != "cpu":
                raise UsageError("int8 runs on the CPU only (ONNX Runtime); use --precision bf16 on a GPU")
            from facskit.runtime.quantize import cached_int8_path

            return OnnxBackend(cached_int8_path(model, weights_hash), device=device, precision="int8")
        if precision != "fp32":
            raise UsageError(f"the onnx backend runs fp32 or int8, not {precision!r}")
        return OnnxBackend(cached_onnx_path(model, weights_hash), device=device)
    raise UsageError(f"unknown backend {name!r}; choose from: {', '.join(BACKENDS)}")


def onnx_installed() -> bool:
    """Whether the ``onnx`` package (export and quantisation; the ``[onnx]`` extra) is installed, without
    importing it."""
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


def onnxruntime_installed() -> bool:
    """Whether the onnx backend can run here (the ``onnx`` extra is installed), without importing it."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


__all__ = [
    "BACKENDS",
    "CANDIDATES",
    "PRECISIONS",
    "Backend",
    "BackendName",
    "OnnxBackend",
    "Precision",
    "TorchBackend",
    "create_backend",
    "onnx_installed",
    "onnxruntime_installed",
]
