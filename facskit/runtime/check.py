"""The backend check: which (backend, precision) a Detector runs when the user leaves either at ``auto``.

``precision="auto"`` (or ``backend="auto"``) measures every candidate this machine can run against torch fp32
on real and synthetic faces it has not been calibrated on, and uses the fastest one whose AU intensities
stay within :data:`MAX_MEAN_DELTA` (mean) and :data:`MAX_ABS_DELTA` (max) of fp32 on the 0-5 scale. The
verdicts are cached per model hash and CPU flags in ``<cache>/backend_verdicts.json``, so the check (seconds
to a minute) runs once per model and machine type; delete the file to recompute.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facskit.device import cpu_flags, has_fast_bf16
from facskit.errors import UsageError
from facskit.io.atomic import atomic_write_text
from facskit.runtime.backends import (
    BACKENDS,
    CANDIDATES,
    PRECISIONS,
    Backend,
    BackendName,
    Precision,
    TorchBackend,
    create_backend,
    onnx_installed,
    onnxruntime_installed,
)

if TYPE_CHECKING:  # pragma: no cover
    from facskit.models.spec import AUModel

# Accuracy a faster path must keep against fp32, AU intensity on the 0-5 scale (the criterion).
MAX_MEAN_DELTA = 0.05
MAX_ABS_DELTA = 0.25
VERDICT_FILE = "backend_verdicts.json"
# Bump when the check changes, so stale verdicts are recomputed.
VERDICT_VERSION = 3
TIMING_BATCH = 16
WARMUP_FACES = 4  # torch's first batch, run before the timed one and left out of its speed


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


def intensities(
    backend: Backend, crops: np.ndarray, batch: int = TIMING_BATCH, times: list[float] | None = None
) -> np.ndarray:
    """AU intensities (N, A) of ``crops`` through ``backend`` (the pipeline's readout, in numpy as the
    pipeline does it); ``times`` receives each batch's network time in seconds."""
    from facskit.targets import intensity_from_heatmaps

    out = []
    for start in range(0, len(crops), batch):
        began = time.perf_counter()
        maps = backend.heatmaps(crops[start : start + batch])  # (B, P, h, w)
        if times is not None:
            times.append(time.perf_counter() - began)
        out.append(intensity_from_heatmaps(maps, backend.spec.convention))
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


def measure(
    reference: Backend, candidate: Backend, crops: np.ndarray, expected: np.ndarray | None = None
) -> Verdict:
    """Compare ``candidate`` with ``reference`` (torch fp32) on ``crops`` and time it.

    ``expected``: the reference's intensities on ``crops`` when already known (:func:`check_backends`
    runs the reference once, not once per candidate: it is the slowest path). The speed is that of the
    accuracy pass itself, its first batch (allocations, ORT's first-run optimisations) left out, so the
    check runs every network over the faces once instead of once more per timing."""
    if expected is None:
        expected = intensities(reference, crops)
    times: list[float] = []
    got = intensities(candidate, crops, times=times)
    mean_delta, max_delta = au_deltas(expected, got)
    speed = pass_speed(candidate, crops, times)
    return Verdict(candidate.name, candidate.precision, mean_delta, max_delta, speed, len(crops))


def pass_speed(backend: Backend, crops: np.ndarray, times: list[float]) -> float:
    """Images per second of an :func:`intensities` pass from its batch ``times``, the first (warm-up) batch
    left out; a single-batch pass is timed again with :func:`throughput`."""
    if len(times) < 2:
        return throughput(backend, crops)
    sizes = [min(TIMING_BATCH, len(crops) - start) for start in range(0, len(crops), TIMING_BATCH)]
    return sum(sizes[1:]) / max(sum(times[1:]), 1e-9)


def choose(verdicts: list[Verdict]) -> Verdict:
    """The fastest verdict that passed; fp32 always passes against itself, so there is always one."""
    passed = [v for v in verdicts if v.passed]
    if not passed:
        raise ValueError("no backend passed the accuracy check (torch fp32 should always pass)")
    return max(passed, key=lambda v: v.images_per_s)


def available_candidates(
    device: str,
    backend: BackendName,
    precision: Precision,
    flags: frozenset[str] | None = None,
    exported: bool = False,
) -> list[tuple[str, str]]:
    """The (backend, precision) paths ``auto`` may consider here, within what the user pinned.

    ONNX Runtime is a core dependency, but exporting and quantising a torch model also need the ``onnx``
    package (the ``[onnx]`` extra); ``exported`` says the ONNX files exist already (shipped beside the
    checkpoint), so ONNX Runtime alone is enough."""
    flags = cpu_flags() if flags is None else flags
    onnx_ok = onnxruntime_installed() and (exported or onnx_installed())
    out = []
    for name, prec in CANDIDATES:
        if backend != "auto" and name != backend or precision != "auto" and prec != precision:
            continue
        if device != "cpu" and (name, prec) not in (("torch", "bf16"), ("torch", "fp32")):
            continue  # on a GPU: torch with and without AMP
        if device == "cpu" and prec == "bf16" and not has_fast_bf16(flags):
            continue
        if name == "onnx" and not onnx_ok:
            continue
        out.append((name, prec))
    return out


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
    from facskit.runtime.export import cache_dir

    return cache_dir() / VERDICT_FILE


def read_cached(key: str) -> Any:
    """The entry ``key`` of the verdict cache file, None when absent (or the file is missing or unreadable:
    a cache is only ever recomputed, never trusted in part)."""
    return _cache_contents().get(key)


def write_cached(key: str, value: Any) -> None:
    """Set the entry ``key`` of the verdict cache file (atomic replace; a lost race between two processes
    loses one cache entry only). The backend check and the shipped files' local timing share the file."""
    data = _cache_contents()
    data[key] = value
    atomic_write_text(verdict_file(), json.dumps(data, indent=1, sort_keys=True) + "\n", parents=True)


def _cache_contents() -> dict[str, Any]:
    try:
        data = json.loads(verdict_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_verdicts(key: str) -> dict[tuple[str, str], Verdict]:
    """The cached verdicts under ``key`` (empty when absent or unreadable)."""
    try:
        return {(e["backend"], e["precision"]): Verdict(**e) for e in read_cached(key) or []}
    except (ValueError, TypeError, KeyError):
        return {}


def save_verdicts(key: str, verdicts: list[Verdict]) -> None:
    """Merge ``verdicts`` under ``key`` into the cache file."""
    merged = {(e["backend"], e["precision"]): e for e in read_cached(key) or []}
    merged.update({(v.backend, v.precision): asdict(v) for v in verdicts})
    write_cached(key, list(merged.values()))


def check_backends(
    model: AUModel,
    weights_hash: str,
    device: str,
    candidates: list[tuple[str, str]],
    crops: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Verdict]:
    """Measure ``candidates`` against torch fp32 on ``crops`` (default: the held-out real + synthetic
    check faces of :func:`facskit.runtime.quantize.face_crops`).

    On a CPU with ONNX Runtime among the candidates, torch runs only :data:`WARMUP_FACES` +
    :data:`TIMING_BATCH` faces (its speed, and the reference the ONNX fp32 export must match within the
    same limits); the verified ONNX fp32 file, ~2-5x faster and within ~1e-5 of torch, is then the
    reference for the other candidates on all faces. Torch fp32 over all 48 faces of the earlier check
    set was most of its time: 16 of 45 s for an imported paper-size Hourglass on 2 cores
    (benchmarks/results/int8.md)."""
    if crops is None:
        from facskit.runtime.quantize import face_crops

        crops = face_crops(model.spec, "check")
    say = progress or (lambda _: None)
    torch_fp32 = TorchBackend(model, device, "fp32")
    if device != "cpu" or ("onnx", "fp32") not in candidates or len(crops) < WARMUP_FACES + TIMING_BATCH:
        return _check_against_torch(torch_fp32, weights_hash, device, candidates, crops, say)
    rest = [c for c in candidates if c not in (("torch", "fp32"), ("onnx", "fp32"))]
    steps = 2 + len(rest)
    say(f"backend check 1/{steps}: torch fp32 (on {TIMING_BATCH} faces)")
    intensities(torch_fp32, crops[:WARMUP_FACES])  # allocations and one-time set-up, not timed
    timed = crops[WARMUP_FACES : WARMUP_FACES + TIMING_BATCH]
    times: list[float] = []
    torch_few = intensities(torch_fp32, timed, times=times)
    verdicts = [Verdict("torch", "fp32", 0.0, 0.0, len(timed) / max(sum(times), 1e-9), len(timed))]
    say(f"backend check 2/{steps}: onnx fp32")
    onnx_fp32 = create_backend("onnx", model, device, "fp32", weights_hash)
    times = []
    reference = intensities(onnx_fp32, crops, times=times)
    mean_delta, max_delta = au_deltas(torch_few, reference[WARMUP_FACES : WARMUP_FACES + TIMING_BATCH])
    speed = pass_speed(onnx_fp32, crops, times)
    verdicts.append(Verdict("onnx", "fp32", mean_delta, max_delta, speed, len(timed)))
    del onnx_fp32  # its memory arena is freed before int8 calibration, the check's largest allocation
    if not verdicts[-1].passed:  # a broken export cannot stand in for torch: the full check instead
        return _check_against_torch(torch_fp32, weights_hash, device, candidates, crops, say)
    for step, (name, prec) in enumerate(rest, 3):
        say(f"backend check {step}/{steps}: {name} {prec}")
        backend = create_backend(name, model, device, prec, weights_hash)
        times = []
        mean_delta, max_delta = au_deltas(reference, intensities(backend, crops, times=times))
        speed = pass_speed(backend, crops, times)
        verdicts.append(Verdict(name, prec, mean_delta, max_delta, speed, len(crops)))
        del backend
    return [v for v in verdicts if (v.backend, v.precision) in candidates]


def _check_against_torch(
    reference: TorchBackend,
    weights_hash: str,
    device: str,
    candidates: list[tuple[str, str]],
    crops: np.ndarray,
    say: Callable[[str], None],
) -> list[Verdict]:
    """Every candidate against torch fp32 (``reference``) run over all of ``crops``."""
    times: list[float] = []
    expected = intensities(reference, crops, times=times)
    verdicts = []
    for step, (name, prec) in enumerate(candidates, 1):
        say(f"backend check {step}/{len(candidates)}: {name} {prec}")
        if (name, prec) == ("torch", "fp32"):
            speed = pass_speed(reference, crops, times)
            verdicts.append(Verdict("torch", "fp32", 0.0, 0.0, speed, len(crops)))
            continue
        backend = create_backend(name, reference.model, device, prec, weights_hash)
        verdicts.append(measure(reference, backend, crops, expected))
    return verdicts


def select_backend(
    model: AUModel,
    weights_hash: str,
    device: str = "cpu",
    backend: BackendName = "torch",
    precision: Precision = "fp32",
    progress: Callable[[str], None] | None = None,
) -> Backend:
    """The backend a Detector runs: the pinned one, or with ``auto`` the fastest that passed the check.

    ``progress`` gets a line per step of a check that runs now (default: stderr, since a first check takes
    seconds to a minute and a silent pause reads as a hang); pass ``lambda _: None`` to silence it."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    if backend != "auto" and precision != "auto":
        return _recorded(create_backend(backend, model, device, precision, weights_hash), "pinned")
    if backend == "auto" and precision != "auto":
        name = "onnx" if precision == "int8" else "torch"
        return _recorded(create_backend(name, model, device, precision, weights_hash), "pinned")
    candidates = available_candidates(device, backend, precision)
    if not candidates:
        raise UsageError(f"no {backend} backend runs here with precision {precision}")
    if len(candidates) == 1:  # nothing to choose between: skip the check
        name, prec = candidates[0]
        return _recorded(create_backend(name, model, device, prec, weights_hash), "only candidate")
    key = verdict_key(weights_hash, device)
    known = load_verdicts(key)
    missing = [c for c in candidates if c not in known]
    source = "check (cached)" if not missing else "check (measured now)"
    if missing:
        say = progress or _stderr_line
        say(
            "facskit: checking which backend runs this model fastest within the accuracy limits "
            f"(once per model and machine; cached in {verdict_file()}; --backend/--precision skip it)"
        )
        measured = check_backends(
            model, weights_hash, device, sorted(set(missing) | {("torch", "fp32")}), progress=say
        )
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
        return _recorded(create_backend("torch", model, device, "fp32", weights_hash), "no path passed")
    best = choose(verdicts)
    return _recorded(create_backend(best.backend, model, device, best.precision, weights_hash), source, best)


def _stderr_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _recorded(backend: Backend, source: str, verdict: Verdict | None = None) -> Backend:
    """``backend`` with how it was chosen (and, after a check, its measured AU error against fp32) in its
    ``check`` attribute, which run.json and every result's attrs record."""
    record: dict[str, Any] = {"source": source, "backend": backend.name, "precision": backend.precision}
    if verdict is not None:
        record.update(
            mean_delta=verdict.mean_delta,
            max_delta=verdict.max_delta,
            images_per_s=verdict.images_per_s,
            faces=verdict.faces,
        )
    backend.check = record  # type: ignore[attr-defined]
    return backend


def always_torch(device: str, backend: BackendName, precision: Precision) -> bool:
    """Whether :func:`select_backend` picks torch for these options on any machine, before any model is
    loaded (``facskit analyze --ray`` then has its workers import torch while they warm up). ``auto`` with
    ``auto`` on a CPU is decided by the accuracy check, and is usually ONNX Runtime: False."""
    if backend != "auto":
        return backend == "torch"
    return device != "cpu" or precision in ("fp32", "bf16") or not onnxruntime_installed()


def verdict_summary(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """Plain rows (for benchmarks and logs)."""
    return [{**asdict(v), "passed": v.passed} for v in verdicts]


__all__ = [
    "MAX_ABS_DELTA",
    "MAX_MEAN_DELTA",
    "Verdict",
    "always_torch",
    "au_deltas",
    "available_candidates",
    "check_backends",
    "choose",
    "intensities",
    "measure",
    "select_backend",
    "verdict_summary",
]
