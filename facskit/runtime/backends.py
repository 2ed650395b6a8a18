"""Where the network runs: a small ``Backend`` interface, and the run-time choice of the fastest safe one.

A backend turns a batch of aligned uint8 crops into heatmaps. Pre-processing comes from the model's
``ModelSpec`` (:func:`facskit.models.spec.preprocess`; its torch-free twin ``preprocess_numpy`` for ONNX
Runtime) and the readout is done by the caller, so every backend feeds and reads the network identically and
only the runtime differs:

* ``torch`` ``fp32``: PyTorch eager, the reference every other path is checked against.
* ``torch`` ``bf16``: channels_last + bf16 autocast on a CPU with ``avx512_bf16``/``amx_bf16`` (about 2x on
  the Hourglass, DESIGN.md section 6); on CUDA, automatic mixed precision.
* ``onnx`` ``fp32``: ONNX Runtime on the cached export (:mod:`facskit.export`).
* ``onnx`` ``int8``: ONNX Runtime on a statically quantised copy calibrated on real aligned faces
  (:mod:`facskit.analyze.quantize`).

``precision="auto"`` (or ``backend="auto"``) measures every candidate this machine can run against torch fp32
on real and synthetic faces it has not been calibrated on, and uses the fastest one whose AU intensities
stay within :data:`MAX_MEAN_DELTA` (mean) and :data:`MAX_ABS_DELTA` (max) of fp32 on the 0-5 scale. The
verdicts are cached per model hash and CPU flags in ``<cache>/backend_verdicts.json``, so the check (seconds
to a minute) runs once per model and machine type; delete the file to recompute.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from facskit.errors import CheckpointError, UsageError

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
# Accuracy a faster path must keep against fp32, AU intensity on the 0-5 scale (the criterion).
MAX_MEAN_DELTA = 0.05
MAX_ABS_DELTA = 0.25
VERDICT_FILE = "backend_verdicts.json"
# Bump when the check changes, so stale verdicts are recomputed.
VERDICT_VERSION = 1
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
TIMING_BATCH = 16


@runtime_checkable
class Backend(Protocol):
    """Runs the AU network on aligned crops."""

    spec: ModelSpec
    name: str
    precision: str

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """``crops`` (B, S, S, 3) uint8 RGB aligned faces -> heatmaps (B, P, h, w) float32."""
        ...


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


class TorchBackend:
    """PyTorch inference (eval mode, no grad) on ``device``, in fp32 or bf16 (CPU: channels_last + autocast;
    CUDA: autocast, i.e. AMP)."""

    name = "torch"

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
    """ONNX Runtime inference on a model written by :func:`facskit.export.export_onnx` (spec embedded), or
    its int8 copy from :func:`facskit.analyze.quantize.quantize_onnx`.

    It imports neither torch nor the ``onnx`` package: the spec comes from the session's metadata and the
    input from :func:`facskit.models.spec.preprocess_numpy`. Importing torch costs a process ~0.9 s and
    ~200 MB, ``onnx`` ~0.6 s (its ml_dtypes), and every Ray worker used to pay both before its first task.
    """

    name = "onnx"

    def __init__(
        self, path: Path | str, device: str = "cpu", threads: int | None = None, precision: str = "fp32"
    ) -> None:
        from facskit.export import spec_from_metadata

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
            raise CheckpointError(f"{self.path}: not a readable ONNX file ({_first_line(error)})") from None
        try:
            self.spec = spec_from_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        except (ValueError, KeyError, TypeError) as error:  # a spec that is not JSON or not a spec
            raise CheckpointError(f"{self.path}: invalid facskit model spec ({_first_line(error)})") from None
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def create_backend(
    name: str, model: AUModel, device: str = "cpu", precision: str = "fp32", weights_hash: str | None = None
) -> Backend:
    """The backend ``name`` at ``precision`` for ``model``. ``"onnx"`` exports the model to a cached ONNX file
    first (keyed by a hash of its weights), ``int8`` quantises that once more; the first run pays for both."""
    if name == "torch":
        return TorchBackend(model, device, precision)
    if name == "onnx":
        from facskit.export import cached_onnx_path

        if weights_hash is None:
            from facskit.analyze.detector import _weights_hash

            weights_hash = _weights_hash(model)
        if precision == "int8":
            if device != "cpu":
                raise UsageError("int8 runs on the CPU only (ONNX Runtime); use --precision bf16 on a GPU")
            from facskit.analyze.quantize import cached_int8_path

            return OnnxBackend(cached_int8_path(model, weights_hash), device=device, precision="int8")
        if precision != "fp32":
            raise UsageError(f"the onnx backend runs fp32 or int8, not {precision!r}")
        return OnnxBackend(cached_onnx_path(model, weights_hash), device=device)
    raise UsageError(f"unknown backend {name!r}; choose from: {', '.join(BACKENDS)}")


# ------------------------------------------------------------------------------------------ verdicts


@dataclass(frozen=True)
class Verdict:
    """How one (backend, precision) path compares with torch fp32 on held-out faces, and how fast it is."""

    backend: str
    precision: str
    mean_delta: float  # mean |AU - AU_fp32| over faces and AUs, 0-5 scale
    max_delta: float  # max |AU - AU_fp32|
    images_per_s: float  # network only, batch TIMING_BATCH, this process's threads
    faces: int  # faces the deltas were measured on

    @property
    def passed(self) -> bool:
        return self.mean_delta <= MAX_MEAN_DELTA and self.max_delta <= MAX_ABS_DELTA


def au_deltas(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(mean, max) of |candidate - reference| for AU intensities (N, A) on the 0-5 scale."""
    diff = np.abs(np.asarray(candidate, np.float64) - np.asarray(reference, np.float64))
    return float(diff.mean()), float(diff.max())


def intensities(backend: Backend, crops: np.ndarray, batch: int = TIMING_BATCH) -> np.ndarray:
    """AU intensities (N, A) of ``crops`` through ``backend`` (the pipeline's readout)."""
    import torch

    from facskit.models.spec import intensity_from_heatmaps

    out = []
    for start in range(0, len(crops), batch):
        maps = backend.heatmaps(crops[start : start + batch])  # (B, P, h, w)
        out.append(intensity_from_heatmaps(torch.from_numpy(maps), backend.spec.convention).numpy())
    return np.concatenate(out)


def throughput(backend: Backend, crops: np.ndarray, repeats: int = 2) -> float:
    """Images per second of the network alone on one batch of ``crops`` (best of ``repeats``)."""
    batch = crops[:TIMING_BATCH]
    backend.heatmaps(batch)  # warm-up: allocations, ORT's first-run optimisations
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        backend.heatmaps(batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


def measure(reference: Backend, candidate: Backend, crops: np.ndarray) -> Verdict:
    """Compare ``candidate`` with ``reference`` (torch fp32) on ``crops`` and time it."""
    mean_delta, max_delta = au_deltas(intensities(reference, crops), intensities(candidate, crops))
    return Verdict(
        candidate.name, candidate.precision, mean_delta, max_delta, throughput(candidate, crops), len(crops)
    )


def choose(verdicts: list[Verdict]) -> Verdict:
    """The fastest verdict that passed; fp32 always passes against itself, so there is always one."""
    passed = [v for v in verdicts if v.passed]
    if not passed:
        raise ValueError("no backend passed the accuracy check (torch fp32 should always pass)")
    return max(passed, key=lambda v: v.images_per_s)


def available_candidates(
    device: str, backend: BackendName, precision: Precision, flags: frozenset[str] | None = None
) -> list[tuple[str, str]]:
    """The (backend, precision) paths ``auto`` may consider here, within what the user pinned."""
    flags = cpu_flags() if flags is None else flags
    out = []
    for name, prec in CANDIDATES:
        if backend != "auto" and name != backend or precision != "auto" and prec != precision:
            continue
        if device != "cpu" and (name, prec) not in (("torch", "bf16"), ("torch", "fp32")):
            continue  # on a GPU: torch with and without AMP
        if device == "cpu" and prec == "bf16" and not has_fast_bf16(flags):
            continue
        if name == "onnx" and not _onnxruntime_installed():
            continue
        out.append((name, prec))
    return out


def _onnxruntime_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def verdict_key(weights_hash: str, device: str, flags: frozenset[str] | None = None) -> str:
    """Cache key: the weights, the device and the CPU flags that change which kernels run."""
    flags = cpu_flags() if flags is None else flags
    relevant = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c", "sse4")))
    digest = hashlib.sha256(" ".join(relevant).encode()).hexdigest()[:12]
    return f"v{VERDICT_VERSION}-{weights_hash}-{device}-{digest}-t{_threads()}"


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def verdict_file() -> Path:
    from facskit.export import cache_dir

    return cache_dir() / VERDICT_FILE


def load_verdicts(key: str) -> dict[tuple[str, str], Verdict]:
    """The cached verdicts under ``key`` (empty when absent or unreadable)."""
    try:
        entries = json.loads(verdict_file().read_text()).get(key, [])
        return {(e["backend"], e["precision"]): Verdict(**e) for e in entries}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def save_verdicts(key: str, verdicts: list[Verdict]) -> None:
    """Merge ``verdicts`` under ``key`` into the cache file (atomic replace; a lost race loses a cache entry
    only)."""
    path = verdict_file()
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        data = {}
    merged = {(e["backend"], e["precision"]): e for e in data.get(key, [])}
    merged.update({(v.backend, v.precision): asdict(v) for v in verdicts})
    data[key] = list(merged.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def check_backends(
    model: AUModel,
    weights_hash: str,
    device: str,
    candidates: list[tuple[str, str]],
    crops: np.ndarray | None = None,
) -> list[Verdict]:
    """Measure ``candidates`` against torch fp32 on ``crops`` (default: the held-out real + synthetic
    check faces of :func:`facskit.analyze.quantize.face_crops`)."""
    if crops is None:
        from facskit.analyze.quantize import face_crops

        crops = face_crops(model.spec, "check")
    reference = TorchBackend(model, device, "fp32")
    verdicts = []
    for name, prec in candidates:
        backend = (
            reference
            if (name, prec) == ("torch", "fp32")
            else create_backend(name, model, device, prec, weights_hash)
        )
        verdicts.append(measure(reference, backend, crops))
    return verdicts


def select_backend(
    model: AUModel,
    weights_hash: str,
    device: str = "cpu",
    backend: BackendName = "torch",
    precision: Precision = "fp32",
) -> Backend:
    """The backend a Detector runs: the pinned one, or with ``auto`` the fastest that passed the check."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    if backend != "auto" and precision != "auto":
        return create_backend(backend, model, device, precision, weights_hash)
    if backend == "auto" and precision != "auto":
        return create_backend(
            "onnx" if precision == "int8" else "torch", model, device, precision, weights_hash
        )
    candidates = available_candidates(device, backend, precision)
    if not candidates:
        raise UsageError(f"no {backend} backend runs here with precision {precision}")
    if len(candidates) == 1:  # nothing to choose between: skip the check
        name, prec = candidates[0]
        return create_backend(name, model, device, prec, weights_hash)
    key = verdict_key(weights_hash, device)
    known = load_verdicts(key)
    missing = [c for c in candidates if c not in known]
    if missing:
        measured = check_backends(model, weights_hash, device, sorted(set(missing) | {("torch", "fp32")}))
        save_verdicts(key, measured)
        known.update({(v.backend, v.precision): v for v in measured})
    verdicts = [known[c] for c in candidates if c in known]
    for v in verdicts:
        if not v.passed:
            warnings.warn(
                f"{v.backend} {v.precision} is not used: AU intensities differ from fp32 by "
                f"{v.mean_delta:.3f} mean / {v.max_delta:.3f} max "
                f"(limits {MAX_MEAN_DELTA} / {MAX_ABS_DELTA})",
                stacklevel=3,
            )
    if not any(v.passed for v in verdicts):
        return create_backend("torch", model, device, "fp32", weights_hash)
    best = choose(verdicts)
    return create_backend(best.backend, model, device, best.precision, weights_hash)


def always_torch(device: str, backend: BackendName, precision: Precision) -> bool:
    """Whether :func:`select_backend` picks torch for these options on any machine, before any model is
    loaded (``facskit analyze --ray`` then has its workers import torch while they warm up). ``auto`` with
    ``auto`` on a CPU is decided by the accuracy check, and is usually ONNX Runtime: False."""
    if backend != "auto":
        return backend == "torch"
    return device != "cpu" or precision in ("fp32", "bf16") or not _onnxruntime_installed()


def verdict_summary(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """Plain rows (for benchmarks and logs)."""
    return [{**asdict(v), "passed": v.passed} for v in verdicts]


__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "OnnxBackend",
    "TorchBackend",
    "Verdict",
    "always_torch",
    "au_deltas",
    "check_backends",
    "choose",
    "cpu_flags",
    "create_backend",
    "select_backend",
]
